"""The joint search that fills a cost budget (:mod:`.cost`) with the most important heads and FFN neurons.

    choice = fill_budget(head_sets, head_imp, neuron_imp, cost, budget=cost.of(dense...) / 3)

The search is Kwon et al. 2022's (``search_mac`` in their public code): for each candidate head set,
the budget left buys the most important FFN neurons (ranked globally across layers); the split with the
largest kept importance wins. Head sets come from the selection method (top-k by Fisher, or CAHP's
complementary sets), so the same search serves every method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cahp_edge.prune.cost import UnitCost


@dataclass
class Choice:
    heads: torch.Tensor  # (L, H) 0/1
    neurons: torch.Tensor  # (L, I) 0/1
    cost: float
    value: float  # kept importance

    @property
    def heads_per_layer(self) -> list[int]:
        return [int(r.sum()) for r in self.heads]

    @property
    def neurons_per_layer(self) -> list[int]:
        return [int(r.sum()) for r in self.neurons]


def top_mask(importance: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 mask of ``importance``'s shape keeping its k largest entries (ties: lower flat index first)."""
    flat = importance.flatten().double()
    order = torch.argsort(-flat, stable=True)
    m = torch.zeros_like(flat)
    m[order[: max(0, int(k))]] = 1.0
    return m.view(importance.shape).float()


def fill_budget(head_sets: dict[int, torch.Tensor], head_imp: torch.Tensor, neuron_imp: torch.Tensor,
                cost: UnitCost, budget: float, multiple: int = 1) -> Choice:
    """The head set and FFN neurons of largest kept importance whose cost is within ``budget``.

    ``head_sets``: candidate (L, H) head masks by head count. ``multiple``: every layer keeps a multiple
    of this many neurons (the rounding the target's int8 kernels prefer), rounded down.
    """
    total_neurons = neuron_imp.numel()
    best: Choice | None = None
    for _, hm in sorted(head_sets.items()):
        left = budget - cost.fixed - cost.per_head * float(hm.sum())
        if left < 0:
            continue
        n = min(total_neurons, int(left // cost.per_neuron))
        nm = round_down(top_mask(neuron_imp, n), neuron_imp, multiple)
        value = float((head_imp * hm).sum() + (neuron_imp * nm).sum())
        if best is None or value > best.value:
            best = Choice(hm, nm, cost.of(hm.sum(1).tolist(), nm.sum(1).tolist()), value)
    if best is None:
        smallest = min(float(h.sum()) for h in head_sets.values())
        raise ValueError(f"no head set fits: budget {budget:.4g} < fixed {cost.fixed:.4g} + "
                         f"{smallest:g} heads")
    return best


def round_down(mask: torch.Tensor, importance: torch.Tensor, multiple: int) -> torch.Tensor:
    """Drop each row's least important kept units until its count is a multiple of ``multiple``."""
    if multiple <= 1:
        return mask
    out = mask.clone()
    for i, row in enumerate(mask):
        kept = row.nonzero().flatten()
        extra = len(kept) % multiple
        if extra:
            worst = kept[torch.argsort(importance[i, kept], stable=True)[:extra]]
            out[i, worst] = 0.0
    return out


def uniform_choice(head_imp: torch.Tensor, neuron_imp: torch.Tensor, cost: UnitCost, budget: float,
                   multiple: int = 1) -> Choice:
    """Every layer keeps the same number of heads h and of neurons n (each layer's most important):
    uniform width reduction. For each h, n is the most the budget allows; the (h, n) of largest kept
    importance wins."""
    L, H = head_imp.shape
    inner, step = neuron_imp.shape[1], max(1, multiple)
    head_rows = [torch.argsort(-row.double(), stable=True) for row in head_imp]
    best: Choice | None = None
    for h in range(H + 1):
        left = budget - cost.fixed - cost.per_head * h * L
        if left < 0:
            break
        n = min(inner, int(left // (cost.per_neuron * L))) // step * step
        hm = torch.zeros_like(head_imp)
        for i, order in enumerate(head_rows):
            hm[i, order[:h]] = 1.0
        nm = torch.stack([top_mask(row, n) for row in neuron_imp])
        value = float((head_imp * hm).sum() + (neuron_imp * nm).sum())
        if best is None or value > best.value:
            best = Choice(hm, nm, cost.of([h] * L, [n] * L), value)
    if best is None:
        raise ValueError(f"no uniform width fits: budget {budget:.4g} < fixed cost {cost.fixed:.4g}")
    return best
