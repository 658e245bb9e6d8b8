"""Padding-aware behavioural signatures of attention heads, reduced on the fly to a JSD head graph.

A head's signature is the set of its attention distributions on a calibration subset, restricted to
real (non-padding) queries and keys. Storing them for every head would cost
examples x heads x T x T floats (BERT-large, 1024 examples: ~25 GB), so each batch's maps are reduced
to pairwise JSD sums at once (:class:`~cahp_edge.prune.distance.JSDAccumulator`) and dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from cahp_edge.prune.batches import Batches, model_inputs
from cahp_edge.prune.distance import JSDAccumulator


@dataclass
class HeadSignatures:
    mean_jsd: torch.Tensor  # (N, N) mean JSD in nats over real query rows, N = sum of heads per layer
    mean_entropy: torch.Tensor  # (N,) mean attention entropy per head (nats)
    heads_per_layer: list[int]
    rows: int  # real query rows seen
    examples: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    # the unmasked model's argmax label per example, one tensor per batch (free: same forward pass)
    predictions: list[torch.Tensor] | None = None


def real_rows(
    attentions: list[torch.Tensor], attention_mask: torch.Tensor, cols: torch.Tensor | None = None
) -> torch.Tensor:
    """Stack per-layer maps into (N, R, T) rows of real queries over real keys (renormalised).

    attentions: per layer (B, H_l, T0, T0); attention_mask: (B, T0) with 1 for real tokens; cols: (T0,)
    bool positions to keep (default: all), T = cols.sum(). Layers are copied one at a time into one
    (B, N, T, T) buffer and normalised in place: that buffer is the largest allocation of the signature
    pass (BERT-large, batch 32, T 128: 0.8 GB), so no second full-size copy is made.
    """
    if cols is not None:
        attention_mask = attention_mask[:, cols]
    b, t = attention_mask.shape
    n = sum(int(a.shape[1]) for a in attentions)
    att = torch.empty(b, n, t, t, dtype=torch.float32, device=attention_mask.device)
    o = 0
    for a in attentions:
        h = int(a.shape[1])
        att[:, o : o + h] = a if cols is None else a[:, :, cols][..., cols]
        o += h
    att.mul_(attention_mask.to(att.dtype)[:, None, None, :])  # zero padded keys
    # softmax already puts ~0 on padded keys; renormalising makes the restriction exact
    att.div_(att.sum(-1, keepdim=True).clamp_min(1e-30))
    return att.permute(1, 0, 2, 3)[:, attention_mask.bool()]  # (N, R, T)


@torch.no_grad()
def collect(model: nn.Module, batches: Batches, device: torch.device | str | None = None,
            progress: Callable[[int, int], None] | None = None) -> HeadSignatures:
    """Run ``batches`` through ``model`` (eager attention) and accumulate the JSD head graph;
    ``progress(done, total)`` after each batch."""
    t0 = time.perf_counter()
    device = device or next(model.parameters()).device
    acc: JSDAccumulator | None = None
    heads: list[int] = []
    examples = 0
    preds: list[torch.Tensor] | None = []
    for i, batch in enumerate(batches):
        b = {k: v.to(device) for k, v in model_inputs(batch).items()}
        out = model(**b, output_attentions=True)
        atts = [a for a in out.attentions if a is not None]
        logits = getattr(out, "logits", None)
        preds = None if preds is None or logits is None else [*preds, logits.argmax(-1).cpu()]
        if acc is None:
            heads = [int(a.shape[1]) for a in atts]
            acc = JSDAccumulator(sum(heads), device=device)
        mask = b["attention_mask"]
        # drop positions that are padding in every row (any padding side) so T is the real max length
        cols = mask.bool().any(0)
        rows = real_rows(atts, mask, None if bool(cols.all()) else cols)
        del out, atts  # the model's own maps are no longer needed while the pairs are reduced
        acc.add(rows)
        del rows
        examples += int(mask.shape[0])
        if progress is not None:
            progress(i + 1, len(batches))
    if acc is None:
        raise ValueError("no calibration batches")
    return HeadSignatures(
        acc.mean().cpu(),
        acc.mean_entropy().cpu(),
        heads,
        acc.rows,
        examples,
        time.perf_counter() - t0,
        predictions=preds,
    )
