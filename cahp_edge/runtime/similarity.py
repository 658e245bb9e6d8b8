"""Sentence-embedding quality on the device, numpy only: cosine of each pair, Spearman against gold.

Spearman is Pearson's r of average ranks (ties share the mean of their ranks), the definition
scipy.stats.spearmanr implements; tests check the two agree.
"""

from __future__ import annotations

import numpy as np


def pair_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) cosine of matching rows of two (N, D) embedding arrays."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(den, 1e-30)


def average_ranks(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equal-length sequences (nan when either is constant)."""
    rx, ry = average_ranks(np.asarray(x)), average_ranks(np.asarray(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")
