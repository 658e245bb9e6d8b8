"""Jensen-Shannon divergence between attention heads, accumulated batch by batch.

For two heads i, j and one real query row r (a distribution over the real keys of that example)

    JSD_r(i, j) = H(m) - (H(p_i) + H(p_j)) / 2,   m = (p_i + p_j) / 2,   H(p) = -sum_k p_k ln p_k

in nats, so 0 <= JSD <= ln 2 (0 for identical rows, ln 2 for disjoint supports). The head distance is
the mean of JSD_r over every real query row of every calibration example. We keep the plain
(squared-metric) JSD as *the* distance and take its square root only where a metric is needed
(:func:`metric`): see docs/cahp.md.

Memory stays bounded: a batch's rows are processed in blocks of rows and of head pairs, and only the
(N, N) sums are kept, never per-example maps for all heads.
"""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)
# elements of the (heads_i, heads_j, rows, keys) mixture block computed at once (~128 MB in float32)
BLOCK_ELEMS = 1 << 25


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last axis; 0 ln 0 = 0."""
    return -torch.special.xlogy(p, p).sum(-1)


def jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """JSD (nats) between distributions on the last axis, broadcasting; for tests and small uses."""
    return (entropy((p + q) / 2) - (entropy(p) + entropy(q)) / 2).clamp_min(0.0)


def pairwise_jsd_sum(rows: torch.Tensor, block_elems: int = BLOCK_ELEMS) -> torch.Tensor:
    """Sum over rows of JSD between every pair of heads.

    rows: (N, R, T) -- N heads, R real query rows, T keys (padding keys hold exact zeros).
    Returns (N, N) float64, symmetric, zero diagonal.
    """
    n, r, t = rows.shape
    out = torch.zeros(n, n, dtype=torch.float64, device=rows.device)
    if n == 0 or r == 0:
        return out
    h = entropy(rows)  # (N, R)
    # rows per block so that even one head pair block fits: chunk rows first, then head i
    r_blk = max(1, min(r, block_elems // max(1, n * t)))
    for r0 in range(0, r, r_blk):
        p = rows[:, r0 : r0 + r_blk]  # (N, r, T)
        hp = h[:, r0 : r0 + r_blk]  # (N, r)
        i_blk = max(1, block_elems // max(1, n * p.shape[1] * t))
        for i0 in range(0, n, i_blk):
            i1 = min(n, i0 + i_blk)
            # only pairs (i, j) with j >= i0: the rest is filled by symmetry
            m = (p[i0:i1, None] + p[None, i0:]) * 0.5  # (ci, N - i0, r, T)
            js = entropy(m) - 0.5 * (hp[i0:i1, None] + hp[None, i0:])  # (ci, N - i0, r)
            out[i0:i1, i0:] += js.clamp_min(0.0).sum(-1).double()
    upper = torch.triu(out, diagonal=1)
    out = upper + upper.T
    return out


class JSDAccumulator:
    """Running sums of pairwise JSD and per-head entropy over real query rows."""

    def __init__(self, num_heads: int, device: torch.device | str = "cpu") -> None:
        self.sum = torch.zeros(num_heads, num_heads, dtype=torch.float64, device=device)
        self.entropy_sum = torch.zeros(num_heads, dtype=torch.float64, device=device)
        self.rows = 0

    def add(self, rows: torch.Tensor) -> None:
        """rows: (N, R, T) attention distributions of R real query rows over T keys."""
        rows = rows.to(self.sum.device)
        self.sum += pairwise_jsd_sum(rows)
        self.entropy_sum += entropy(rows).double().sum(-1)
        self.rows += rows.shape[1]

    def mean(self) -> torch.Tensor:
        """(N, N) mean JSD in nats."""
        return self.sum / max(1, self.rows)

    def mean_entropy(self) -> torch.Tensor:
        return self.entropy_sum / max(1, self.rows)


def metric(mean_jsd: torch.Tensor, sqrt: bool = True) -> torch.Tensor:
    """Distance used by the graph: sqrt of the mean JSD (a metric on heads) unless told otherwise."""
    d = mean_jsd.clamp_min(0.0)
    return d.sqrt() if sqrt else d


def summary(mean_jsd: torch.Tensor, heads_per_layer: list[int]) -> dict:
    """Small, plan-sized description of the distance matrix."""
    n = mean_jsd.shape[0]
    if n < 2:
        return {"mean": 0.0, "min": 0.0, "max": 0.0, "within_layer_mean": 0.0, "across_layer_mean": 0.0}
    layer = torch.cat([torch.full((h,), i) for i, h in enumerate(heads_per_layer)]).to(mean_jsd.device)
    off = ~torch.eye(n, dtype=torch.bool, device=mean_jsd.device)
    same = (layer[:, None] == layer[None, :]) & off
    cross = layer[:, None] != layer[None, :]
    vals = mean_jsd[off]

    def _m(sel: torch.Tensor) -> float:
        return float(mean_jsd[sel].mean()) if sel.any() else 0.0

    return {
        "unit": "nats (mean JSD over real query rows; ln 2 = 0.693 is the maximum)",
        "mean": float(vals.mean()),
        "min": float(vals.min()),
        "max": float(vals.max()),
        "within_layer_mean": _m(same),
        "across_layer_mean": _m(cross),
    }
