"""Knee of the accuracy-vs-heads curve: Kneedle on the polynomial fit, degree checks, max-drop guard."""

from __future__ import annotations

import numpy as np
import pytest

from cahp_edge.errors import UsageError
from cahp_edge.prune.knee import find_knee, kneedle


def test_kneedle_on_piecewise_linear_curve():
    ks = np.arange(0, 101)
    ys = np.minimum(ks, 30) / 30.0  # rises linearly, flat from k = 30
    assert ks[kneedle(ks, ys)] == 30


def test_knee_of_saturating_curve_with_known_knee():
    # a(k) = 1 - exp(-k / 10): the Kneedle knee (max of y_n - x_n) is analytically where
    # a'(k) * 72 / (a(72) - a(2)) = 1 on [2, 72]
    ks = np.array([2, 4, 6, 9, 12, 16, 20, 26, 32, 40, 50, 60, 72])
    acc = 100 * (1 - np.exp(-ks / 10.0))
    span = (1 - np.exp(-7.2)) - (1 - np.exp(-0.2))
    expected = 10 * np.log(70 / (10 * span))  # solve exp(-k/10) / 10 * 70 / span = 1
    kn = find_knee(list(ks), list(acc), degree=6)
    assert abs(kn.k - expected) <= 2, (kn.k, expected)
    assert kn.degree == 6 and len(kn.coef) == 7


def test_knee_is_robust_to_noise_with_low_degree_fit():
    rng = np.random.default_rng(0)
    ks = np.arange(4, 73, 4)
    acc = 50 * np.minimum(ks, 24) / 24 + rng.normal(0, 0.8, len(ks))
    kn = find_knee(list(ks), list(acc), degree=3)
    assert 14 <= kn.k <= 30


def test_flat_curve_keeps_everything():
    kn = find_knee([4, 8, 16, 32, 72], [50.0] * 5, degree=2)
    assert kn.k == 72


@pytest.mark.parametrize("degree", [0, 11, -1])
def test_degree_out_of_range(degree):
    with pytest.raises(UsageError, match="degree"):
        find_knee([1, 2, 3], [1.0, 2.0, 3.0], degree=degree)


def test_max_drop_guard_moves_knee_up():
    ks = np.arange(2, 73, 5)
    acc = 100 * (1 - np.exp(-ks / 10.0))
    free = find_knee(list(ks), list(acc), degree=6)
    guarded = find_knee(list(ks), list(acc), degree=6, max_drop=0.5)
    assert guarded.guarded and guarded.k > free.k
    measured = dict(zip(ks.tolist(), acc.tolist(), strict=True))
    assert measured[guarded.k] >= measured[72] - 0.5  # the stated drop is within the guard
    assert measured[max(k for k in measured if k < guarded.k)] < measured[72] - 0.5  # the smallest such k


# a steep but deep knee: accuracy climbs fast to ~55 by 12 heads, then creeps up to 62.9 at all 72, so
# Kneedle on the default cubic fit (shape only) picks ~23 heads where 5+ points are lost (issue 14's RTE case)
DEEP_KS = [4, 6, 8, 10, 12, 15, 18, 24, 30, 36, 45, 54, 63, 72]
DEEP_ACC = [20.0, 40.0, 50.0, 54.0, 55.5, 56.2, 56.8, 57.5, 58.8, 60.0, 61.0, 61.9, 62.5, 62.9]


@pytest.mark.parametrize("max_drop, expected", [(100.0, None), (5.0, 30), (3.0, 36), (1.0, 54), (0.0, 72)])
def test_guard_moves_a_deep_knee_up_to_the_stated_drop(max_drop, expected):
    free = find_knee(DEEP_KS, DEEP_ACC, degree=3)
    snapped = min(k for k in DEEP_KS if k >= free.k)
    assert 62.9 - dict(zip(DEEP_KS, DEEP_ACC, strict=True))[snapped] > 5  # the unguarded knee loses > 5
    kn = find_knee(DEEP_KS, DEEP_ACC, degree=3, max_drop=max_drop)
    assert kn.k_kneedle == free.k and kn.max_drop == max_drop
    if expected is None:
        assert kn.k == free.k and not kn.guarded
    else:  # the smallest measured count at or above the knee within max_drop of dense
        assert kn.k == expected and kn.guarded
        assert kn.to_dict()["max_drop_points"] == max_drop


def test_guard_takes_the_first_count_at_or_above_the_knee_that_passes():
    """A dip above the chosen count does not force all heads (noise on small selection splits), and counts
    below the Kneedle knee are never taken, however well they score."""
    ks = [4, 8, 12, 18, 24, 36, 48, 58, 72]
    acc = [40.0, 58.0, 54.0, 55.0, 59.0, 60.0, 60.5, 57.5, 61.0]  # 8 lucky, 58 dips 3.5 points
    free = find_knee(ks, acc, degree=3)
    assert free.k > 8
    kn = find_knee(ks, acc, degree=3, max_drop=3.0)
    assert kn.k == min(k for k, a in zip(ks, acc, strict=True) if k >= free.k and a >= 58.0)
