"""Automatic head count: polynomial fit of the accuracy-vs-heads curve, and its Kneedle knee.

Definition (also in docs/cahp.md). Given measured points (k_i, a_i) -- heads kept, selection-split
accuracy -- on a grid from a floor k_min up to all heads N:

1. Fit a least-squares polynomial f of degree ``degree`` (1..10) to the points (numpy's
   ``Polynomial.fit``, which maps k to [-1, 1] for conditioning).
2. Evaluate f at every integer k in [k_min, N] and normalise both axes to [0, 1]:
   x = (k - k_min) / (N - k_min), y = (f(k) - min f) / (max f - min f).
3. Knee k* = the smallest k maximising y - x (Kneedle, Satopaa et al. 2011, for a concave increasing
   curve: the point farthest above the chord from the floor to the full model). A flat or decreasing
   fit (max y - x <= 0) has no knee, and k* = N (keep everything: pruning buys nothing safely).
4. Guard ``max_drop`` (accuracy points; default ``PruneOptions.max_drop``): move k* up to the
   smallest *measured* count k >= k* whose measured accuracy is at least a(N) - max_drop (a(N): the
   dense model). The measured drop at the kept count is what the plan, the report and the model card
   state, so it can never exceed the guard. Kneedle reads the curve's shape; the guard reads how much is
   lost. (Requiring every larger count to pass too was tried: on a noisy 400-row RTE selection split one
   dip of 2.7 points at 58 heads turned a 2-point guard into "keep all 72".)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cahp_edge.errors import UsageError

MIN_DEGREE, MAX_DEGREE = 1, 10


def check_degree(degree: int) -> None:
    if not MIN_DEGREE <= int(degree) <= MAX_DEGREE:
        raise UsageError(
            f"--degree {degree} is out of range",
            f"the polynomial degree must be {MIN_DEGREE}..{MAX_DEGREE}",
            "pass e.g. --degree 3",
        )


@dataclass
class Knee:
    k: int  # chosen head count
    k_kneedle: int  # before the max-drop guard
    coef: list[float]  # polynomial coefficients in the scaled domain, lowest degree first
    domain: list[float]  # [k_min, N] mapped to [-1, 1] before evaluating coef
    degree: int
    fitted: list[tuple[int, float]]  # (k, f(k)) for every integer k in [k_min, N]
    guarded: bool = False
    max_drop: float | None = None

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "k_kneedle": self.k_kneedle,
            "degree": self.degree,
            "coef": self.coef,
            "domain": self.domain,
            "guarded_by_max_drop": self.guarded,
            "max_drop_points": self.max_drop,
            "guard": "smallest measured count >= the knee within max_drop points of dense selection accuracy",
            "definition": "smallest k maximising normalised f(k) - normalised k (Kneedle on the fit)",
        }


def fit(ks: list[int] | np.ndarray, accs: list[float] | np.ndarray, degree: int) -> np.polynomial.Polynomial:
    check_degree(degree)
    ks, accs = np.asarray(ks, dtype=float), np.asarray(accs, dtype=float)
    # a degree above the number of distinct points - 1 is underdetermined: lower it, say so via .degree()
    deg = int(min(degree, max(1, len(np.unique(ks)) - 1)))
    return np.polynomial.Polynomial.fit(ks, accs, deg)


def kneedle(ks: np.ndarray, ys: np.ndarray) -> int:
    """Index of the knee of an increasing concave-ish curve y(k) on sorted ks; -1 when there is none."""
    ks, ys = np.asarray(ks, dtype=float), np.asarray(ys, dtype=float)
    if len(ks) < 3 or ks[-1] == ks[0]:
        return -1
    span = ys.max() - ys.min()
    if span <= 1e-9 * max(1.0, float(np.abs(ys).max())):  # flat up to float noise
        return -1
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    y = (ys - ys.min()) / span
    diff = y - x
    i = int(np.argmax(diff))
    return i if diff[i] > 1e-12 else -1


def find_knee(ks: list[int], accs: list[float], degree: int = 3, max_drop: float | None = None) -> Knee:
    pts = sorted(zip(ks, accs, strict=True))
    k_arr = np.array([p[0] for p in pts], dtype=float)
    poly = fit(k_arr, [p[1] for p in pts], degree)
    k_min, k_max = int(k_arr.min()), int(k_arr.max())
    grid = np.arange(k_min, k_max + 1)
    f = poly(grid)
    i = kneedle(grid, f)
    k_star = int(grid[i]) if i >= 0 else k_max
    k_knee, guarded = k_star, False
    if max_drop is not None:
        # the first measured count at or above the knee whose own measured drop is within max_drop: that
        # drop is what the plan, the report and the card state, so it never exceeds the guard
        dense = pts[-1][1]
        chosen = next(int(k) for k, a in pts if (k >= k_star and a >= dense - max_drop - 1e-9) or k == k_max)
        if chosen != next(int(k) for k, _ in pts if k >= k_star):  # not merely the knee's grid point
            k_star, guarded = chosen, True
    return Knee(
        k_star,
        k_knee,
        [float(c) for c in poly.coef],
        [float(v) for v in poly.domain],
        int(poly.degree()),
        [(int(k), float(v)) for k, v in zip(grid, f, strict=True)],
        guarded,
        max_drop,
    )
