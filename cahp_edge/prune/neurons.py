"""Complementary FFN neurons: CAHP's coverage rule applied inside each layer's FFN.

    sigs = neuron_signatures(model, adapter, calib)               # per layer (I, S), unit rows
    mask = complement_neurons(mask, importance, sigs, 0.125, 0.0625)

A neuron's signature is its activation on S calibration tokens (padding excluded), centred and scaled to
unit length, so the dot product of two signatures is their correlation over those tokens: neurons
with correlated activations stand in for each other (a least-squares re-fit of the down projection
recovers most of a dropped neuron from its correlated neighbours), neurons in different groups cannot.
As for heads (:func:`cahp_edge.prune.cahp.coverage`), a layer keeping k of n neurons must represent
c(k) groups: none at or above ``coverage_from`` of its width (importance order alone), one group per
kept neuron at or below ``coverage_full``. Groups: spherical k-means of the signatures (cost O(n S c) per
iteration, so 9k+ neurons stay cheap: no n x n graph is built).
"""

from __future__ import annotations

import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.prune.batches import Batches, model_inputs
from cahp_edge.prune.cahp import coverage


@torch.no_grad()
def neuron_signatures(model: nn.Module, adapter: Adapter, batches: Batches, tokens: int = 256,
                      seed: int = 0) -> list[torch.Tensor]:
    """Per layer, (I, S) centred unit-length activation signatures on S <= ``tokens`` real tokens."""
    dev = next(model.parameters()).device
    acts: list[list[torch.Tensor]] = [[] for _ in adapter.layers(model)]
    keep: dict = {}

    def hook(i):
        def pre_hook(_mod, args):
            acts[i].append(args[0][keep["mask"]].float().cpu())  # (tokens in batch, I)
        return pre_hook

    handles = [adapter.ffn_out(layer).register_forward_pre_hook(hook(i))
               for i, layer in enumerate(adapter.layers(model))]
    try:
        seen = 0
        for b in batches:
            b = {k: v.to(dev) for k, v in b.items()}
            keep["mask"] = b["attention_mask"].bool()
            model(**model_inputs(b))
            seen += int(keep["mask"].sum())
            if seen >= 4 * tokens:
                break
    finally:
        for h in handles:
            h.remove()
    g = torch.Generator().manual_seed(seed)
    out = []
    for per_layer in acts:
        a = torch.cat(per_layer)  # (N, I)
        a = a[torch.randperm(len(a), generator=g)[:tokens]].T  # (I, S)
        a = a - a.mean(1, keepdim=True)
        out.append(a / a.norm(dim=1, keepdim=True).clamp_min(1e-12))
    return out


def spherical_kmeans(x: torch.Tensor, c: int, seed: int = 0, iters: int = 15) -> torch.Tensor:
    """(n,) cluster labels of unit rows ``x`` (n, S) in ``c`` groups by cosine similarity (seeded)."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    # k-means++ seeding: each new centre drawn with probability ~ squared cosine distance to the nearest
    picks = [int(torch.randint(n, (1,), generator=g))]
    near = x @ x[picks[0]]  # (n,) similarity to the nearest centre so far
    for _ in range(1, c):
        w = (1.0 - near).clamp_min(0.0).pow(2)
        if float(w.sum()) > 0:
            i = int(torch.multinomial(w, 1, generator=g))
        else:  # every row already equals a centre
            i = int(torch.randint(n, (1,), generator=g))
        picks.append(i)
        near = torch.maximum(near, x @ x[i])
    centres = x[picks].clone()  # (c, S)
    labels = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        labels = (x @ centres.T).argmax(1)  # (n,)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=c)
        empty = counts == 0
        if empty.any():  # re-seed empty groups with random rows
            sums[empty] = x[torch.randint(n, (int(empty.sum()),), generator=g)]
        centres = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return labels


def complement_neurons(mask: torch.Tensor, importance: torch.Tensor, signatures: list[torch.Tensor],
                       coverage_from: float, coverage_full: float, seed: int = 0) -> torch.Tensor:
    """``mask`` (L, I) with each layer's kept count unchanged, its kept neurons chosen by the coverage
    rule: the most important neuron of each of c(k) signature groups, then the rest by importance."""
    out = mask.clone()
    for layer, row in enumerate(mask):
        k, n = int(row.sum()), int(row.numel())
        c = coverage(k, n, coverage_from, coverage_full) if k else 0
        if c == 0:
            continue
        labels = spherical_kmeans(signatures[layer], c, seed + layer)
        imp = importance[layer].double()
        order = torch.argsort(-imp, stable=True)
        kept, groups = [], set()
        for i in order.tolist():  # most important member of each group first
            if int(labels[i]) not in groups:
                groups.add(int(labels[i]))
                kept.append(i)
        kept = kept[:c]
        taken = set(kept)
        kept += [i for i in order.tolist() if i not in taken][: k - len(kept)]
        out[layer] = 0.0
        out[layer, kept] = 1.0
    return out
