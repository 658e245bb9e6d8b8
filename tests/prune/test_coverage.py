"""Budget-aware complementarity (issue 14): CAHP keeps heads in salience order at mild compression and
one head per cluster at deep compression, on a constructed head graph with known clusters."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cahp_edge.prune.cahp import CAHP, coverage
from cahp_edge.prune.options import CahpOptions, PruneOptions

LAYERS, HEADS, GROUPS = 8, 8, 4
N = LAYERS * HEADS
GROUP = np.arange(N) % GROUPS  # head h belongs to group h % 4: every group spans all layers


def _graph() -> np.ndarray:
    """Near-zero distances inside a group, 1 across groups (an ideal JSD graph); the closest pair of all
    is two of group 0's salient heads (0 and 4), which the one-per-cluster rule would merge first."""
    d = np.where(GROUP[:, None] == GROUP[None, :], 1e-4, 1.0)
    d[0, 4] = d[4, 0] = 1e-9
    np.fill_diagonal(d, 0.0)
    return d


def _salience() -> np.ndarray:
    """Group 0 holds the 4 most salient heads, so salience order alone would keep only group 0 at k = 4;
    below them salience falls with the member index in every group and the groups interleave (no group
    is the least salient as a whole), so the salience-only rounds of a mild cut never empty a group."""
    s = np.empty(N)
    for h in range(N):
        g, j = GROUP[h], h // GROUPS
        s[h] = 100.0 - j if g == 0 and j < 4 else 10.0 - 0.5 * j + 0.01 * g
    return s


def _selector(schedule: str, **kw) -> CAHP:
    adapter = SimpleNamespace(heads_per_layer=lambda model: [HEADS] * LAYERS)
    sel = CAHP(None, adapter, None, seed=0, schedule=schedule, **kw)
    sal = _salience()
    sel._salience = lambda mask=None, round_idx=0: sal  # a fixed, known salience every round
    return sel


def _kept(sel: CAHP, k: int) -> list[int]:
    masks = sel._oneshot(_graph(), [k]) if sel.schedule == "oneshot" else sel._iterative(_graph(), [k])
    return [int(i) for i in np.flatnonzero(masks[k].reshape(-1).numpy() > 0.5)]


@pytest.mark.parametrize("schedule", ["iterative", "oneshot"])
def test_one_head_less_is_salience_order(schedule):
    """k = N - 1: exactly the least salient head goes, as in importance ranking (the plain CAHP rule would
    drop the less salient head of the closest pair instead)."""
    sal = _salience()
    by_salience = sorted(np.argsort(-sal, kind="stable")[: N - 1].tolist())
    for clustering in ("spectral", "agglomerative"):
        assert _kept(_selector(schedule, clustering=clustering), N - 1) == by_salience
    # one per cluster (average linkage merges the closest pair first) drops salient head 4 instead
    old = _kept(_selector(schedule, coverage_from=1.0, coverage_full=1.0, clustering="agglomerative"), N - 1)
    assert set(range(N)) - set(old) == {4}


@pytest.mark.parametrize("schedule", ["iterative", "oneshot"])
def test_deep_cut_is_one_head_per_cluster(schedule):
    """k = N/16 = the number of groups, keep ratio 0.0625 (full coverage by default): the most salient
    head of every group, although salience alone would keep group 0 only."""
    sal = _salience()
    kept = _kept(_selector(schedule), GROUPS)
    assert sorted(GROUP[kept].tolist()) == list(range(GROUPS))
    for h in kept:
        members = np.flatnonzero(GROUP[h] == GROUP)
        assert sal[h] == sal[members].max()
    by_salience = np.argsort(-sal, kind="stable")[:GROUPS]
    assert set(GROUP[by_salience].tolist()) == {0}


@pytest.mark.parametrize("schedule", ["iterative", "oneshot"])
def test_salience_only_setting_is_importance_ranking_at_every_budget(schedule):
    sal = _salience()
    for k in (N - 1, 32, 16, GROUPS):
        kept = _kept(_selector(schedule, coverage_from=0.0, coverage_full=0.0), k)
        assert sorted(kept) == sorted(np.argsort(-sal, kind="stable")[:k].tolist()), k


def test_coverage_count_schedule():
    d = CahpOptions()
    counts = {k: coverage(k, 72, d.coverage_from, d.coverage_full) for k in (71, 36, 24, 18, 9, 6, 5, 4)}
    assert counts[71] == counts[36] == counts[24] == counts[18] == counts[9] == 0  # down to 12.5%: salience
    assert counts[4] == 4  # deep: every kept head its own cluster
    assert 0 < counts[6] < 6 and 0 < counts[5] <= 5
    assert counts[5] / 5 > counts[6] / 6  # the protected share grows with compression
    ramp = {k: coverage(k, 72, 0.5, 0.125) for k in (36, 24, 18, 9)}  # a wider ramp, same shape
    assert ramp[36] == 0 and 0 < ramp[24] < 24 and 0 < ramp[18] < 18 and ramp[9] == 9
    assert ramp[18] / 18 > ramp[24] / 24
    assert coverage(24, 72, 1.0, 1.0) == 24 and coverage(24, 72, 0.0, 0.0) == 0  # the two ends


def test_coverage_options_are_ordered():
    from cahp_edge.errors import UsageError

    with pytest.raises((UsageError, ValueError), match="coverage"):
        PruneOptions(coverage_from=0.2, coverage_full=0.5)
