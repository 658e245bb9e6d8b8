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
    f = dict(guarded.fitted)
    assert f[guarded.k] >= f[max(f)] - 0.5 - 1e-9
