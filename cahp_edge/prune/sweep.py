"""Shared machinery of every selection method: head indexing, nested masks per budget, the k sweep.

A method is a :class:`Selector`: given head counts (largest first) it returns one (L, H) 0/1 mask per
count. Iterative methods walk down once and record the mask at each count, so a whole sweep costs
one descent. The sweep evaluates each mask's accuracy on the *selection* split and hands the curve to
:mod:`cahp_edge.prune.knee`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.prune.batches import Batches
from cahp_edge.prune.salience import masked_eval


@dataclass
class SelectionData:
    calib: Batches  # signatures and salience (from the training file)
    select: Batches  # accuracy of masked models for the k sweep (training file, disjoint from calib)


@dataclass
class HeadIndex:
    """Flat head ids 0..N-1 <-> (layer, head) for a dense model with ``heads_per_layer``."""

    heads_per_layer: list[int]

    @property
    def n(self) -> int:
        return sum(self.heads_per_layer)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.heads_per_layer), max(self.heads_per_layer)

    def pairs(self) -> list[tuple[int, int]]:
        return [(layer, h) for layer, n in enumerate(self.heads_per_layer) for h in range(n)]

    def layer_of(self) -> np.ndarray:
        return np.array([layer for layer, _ in self.pairs()])

    def flat(self, m: torch.Tensor) -> torch.Tensor:
        """(L, H) -> (N,)"""
        return torch.cat([m[layer, :n] for layer, n in enumerate(self.heads_per_layer)])

    def unflat(self, v: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N,) -> (L, H), zero where a layer has fewer heads."""
        v = torch.as_tensor(np.asarray(v), dtype=torch.float32)
        out = torch.zeros(self.shape)
        i = 0
        for layer, n in enumerate(self.heads_per_layer):
            out[layer, :n] = v[i : i + n]
            i += n
        return out

    def mask_of(self, kept: list[int] | np.ndarray) -> torch.Tensor:
        v = np.zeros(self.n)
        v[np.asarray(list(kept), dtype=int)] = 1.0
        return self.unflat(v)


class Selector(Protocol):
    name: str
    info: dict

    def masks(self, counts: list[int]) -> dict[int, torch.Tensor]:
        """One (L, H) 0/1 mask keeping exactly k heads for every k in ``counts``."""
        ...


@dataclass
class SweepPoint:
    k: int
    accuracy: float
    loss: float

    def to_dict(self) -> dict:
        return {"heads": self.k, "accuracy": self.accuracy, "loss": self.loss}


@dataclass
class Sweep:
    points: list[SweepPoint]
    masks: dict[int, torch.Tensor] = field(repr=False)
    seconds: float = 0.0


def default_grid(n: int, floor: int, points: int = 16) -> list[int]:
    """Head counts from n down to floor, denser at small counts (where accuracy moves fastest)."""
    floor = max(1, min(floor, n))
    g = np.unique(np.round(np.geomspace(floor, n, num=max(2, points))).astype(int))
    return sorted({int(x) for x in g} | {n, floor}, reverse=True)


def run_sweep(
    selector: Selector, model: nn.Module, adapter: Adapter, select: Batches, grid: list[int],
    progress: Callable[[int, int], None] | None = None, known: dict[int, tuple[float, float]] | None = None,
) -> Sweep:
    """Masks for every grid count, then the selection accuracy under each; ``progress(done, total)``.
    ``known``: (accuracy, loss) already measured for a count (the dense model's, at all heads)."""
    t0 = time.perf_counter()
    masks = selector.masks(sorted(set(grid), reverse=True))
    pts = []
    for i, k in enumerate(sorted(masks, reverse=True)):
        if progress is not None:
            progress(i, len(masks))
        if known and k in known and bool(masks[k].all()):  # every head kept: measured already
            acc, loss = known[k]
        else:
            acc, loss = masked_eval(model, adapter, select, masks[k])
        pts.append(SweepPoint(k, acc, loss))
    if progress is not None:
        progress(len(masks), len(masks))
    return Sweep(pts, masks, time.perf_counter() - t0)
