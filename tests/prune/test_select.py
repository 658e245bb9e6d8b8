"""Selection methods on a tiny model: exact budgets, one representative per cluster, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cahp_edge.arch import get_adapter
from cahp_edge.errors import UsageError
from cahp_edge.prune.batches import Batches
from cahp_edge.prune.cahp import CAHP
from cahp_edge.prune.graph import affinity, cluster
from cahp_edge.prune.select import METHODS, PruneOptions, select_heads
from cahp_edge.prune.sweep import SelectionData
from tests.helpers.tiny import tiny_batch, tiny_model

torch.set_num_threads(1)  # tiny models: threading overhead dominates on a shared 2-core box


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    m = tiny_model("bert", num_labels=3)  # 3 layers x 4 heads

    def mk(seed):
        b = tiny_batch(m, batch=8, seq=12, seed=seed)
        b["labels"] = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(seed))
        return b

    return m, get_adapter(m.config), SelectionData(Batches([mk(1), mk(2)]), Batches([mk(3)]))


def test_cluster_labels_and_affinity():
    # two obvious groups of 3 heads
    d = np.full((6, 6), 0.9)
    d[:3, :3] = d[3:, 3:] = 0.05
    np.fill_diagonal(d, 0)
    for method in ("spectral", "agglomerative"):
        lab = cluster(d, 2, method, seed=0)
        assert sorted(set(lab)) == [0, 1] and len(set(lab[:3])) == 1 and len(set(lab[3:])) == 1
    a = affinity(d)
    assert np.allclose(np.diag(a), 1) and a[0, 1] > a[0, 4]
    assert list(cluster(d, 6)) == list(range(6)) and set(cluster(d, 1)) == {0}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_exactly_the_budget(setup, method):
    m, ad, data = setup
    for k in (1, 5, 12):
        plan = select_heads(m, ad, data, PruneOptions(method=method, heads=k))
        assert plan.total_kept == k and plan.num_heads == (4, 4, 4)
        assert plan.meta["k_star"] == k and plan.meta["method"] == method


def test_oneshot_cahp_keeps_one_representative_per_cluster(setup):
    m, ad, data = setup
    # full coverage at every budget: the one-per-cluster end of the budget-aware rule (test_coverage.py)
    sel = CAHP(m, ad, data, seed=0, schedule="oneshot", coverage_from=1.0, coverage_full=1.0)
    masks = sel.masks([6, 3])
    for k, mask in masks.items():
        labels = np.array(sel.info["clusters"][k])
        kept = np.nonzero(sel.index.flat(mask).numpy() > 0.5)[0]
        assert len(kept) == k
        if len(set(labels)) == k:  # one head from every cluster, no cluster twice
            assert sorted(labels[kept]) == sorted(set(labels))
        sal = np.array(sel.info["salience"])
        for h in kept:  # the representative is its cluster's most salient head
            assert sal[h] == sal[labels == labels[h]].max()


def test_iterative_cahp_is_nested(setup):
    m, ad, data = setup
    sel = CAHP(m, ad, data, seed=0)
    masks = sel.masks([9, 6, 3])
    assert torch.all(masks[3] <= masks[6]) and torch.all(masks[6] <= masks[9])
    assert sel.info["rounds"] >= 3 and sel.info["timings"]["signatures_s"] > 0


def test_knee_plan_meta(setup):
    m, ad, data = setup
    ticks = []
    plan = select_heads(m, ad, data, PruneOptions(method="cahp", degree=2, floor=2),
                        progress=lambda *t: ticks.append(t))
    meta = plan.meta
    # progress for the build's bar: selection first, then one tick per evaluated head count
    assert ticks[0] == ("select heads", 0, 1) and ticks.index(("select heads", 1, 1)) < ticks.index(
        ("knee sweep", 0, len(meta["curve"])))
    assert ticks[-1] == ("knee sweep", len(meta["curve"]), len(meta["curve"]))
    # inside selection: one tick per calibration batch of the signature pass, one per selection round,
    # each counting up to its exact total (an ETA needs the total to be right)
    sig = [t for t in ticks if t[0] == "attention signatures"]
    assert [t[1] for t in sig] == list(range(1, len(data.calib) + 1))
    assert {t[2] for t in sig} == {len(data.calib)}
    rounds = [t for t in ticks if t[0] == "selection rounds"]
    assert [t[1] for t in rounds] == list(range(1, meta["selector"]["rounds"] + 1))
    assert {t[2] for t in rounds} == {meta["selector"]["rounds"]}
    assert ticks.index(sig[-1]) < ticks.index(rounds[0]) < ticks.index(("select heads", 1, 1))
    assert meta["budget_source"] == "knee" and plan.total_kept == meta["k_star"]
    assert next(p["heads"] for p in meta["curve"]) == 12 and len(meta["fit_coefficients"]) == 3
    assert meta["k_star"] in [p["heads"] for p in meta["curve"]]
    at_k = next(p["accuracy"] for p in meta["curve"] if p["heads"] == meta["k_star"])
    assert meta["selection_drop_points"] == round(100 * (meta["selection_accuracy_dense"] - at_k), 2)
    assert np.asarray(meta["salience"]).shape == (3, 4)
    assert {"signatures_s", "salience_s", "clustering_s", "selection_s"} <= set(meta["timings"])
    assert meta["distance_summary"] if "distance_summary" in meta else meta["selector"]["distance_summary"]


@pytest.mark.parametrize("method", ["cahp", "michel", "random"])
def test_same_seed_same_plan(setup, method):
    m, ad, data = setup
    a = select_heads(m, ad, data, PruneOptions(method=method, heads=5, seed=3))
    b = select_heads(m, ad, data, PruneOptions(method=method, heads=5, seed=3))
    assert a.kept == b.kept
    assert a.meta["salience"] == b.meta["salience"]


def test_budget_errors(setup):
    m, ad, data = setup
    with pytest.raises(UsageError, match="outside the model's head count"):
        select_heads(m, ad, data, PruneOptions(heads=13))
    with pytest.raises(UsageError, match="keep-ratio"):
        select_heads(m, ad, data, PruneOptions(keep_ratio=1.5))
    with pytest.raises(UsageError, match="both"):
        select_heads(m, ad, data, PruneOptions(heads=3, keep_ratio=0.5))
    with pytest.raises(UsageError, match="degree"):
        select_heads(m, ad, data, PruneOptions(degree=11))
    with pytest.raises(UsageError, match="unknown method"):
        select_heads(m, ad, data, PruneOptions(method="nope"))


def test_fisher_salience_is_mean_squared_per_example_gradient(setup):
    from cahp_edge.model.mask import HeadMask
    from cahp_edge.prune.salience import head_salience

    m, ad, data = setup
    mask = torch.ones(3, 4)
    mask[1, 2] = 0.0
    got = head_salience(m, ad, data.calib, mask, kind="fisher")
    want, n = torch.zeros(3, 4), 0
    for b in data.calib:
        for i in range(b["labels"].shape[0]):
            one = {k: v[i : i + 1] for k, v in b.items()}
            with HeadMask(m, ad, values=mask, requires_grad=True) as hm:
                logits = m(input_ids=one["input_ids"], attention_mask=one["attention_mask"]).logits
                loss = torch.nn.functional.cross_entropy(logits, one["labels"])
                (g,) = torch.autograd.grad(loss, hm.values)
            want += g.pow(2)
            n += 1
    want = want / n * (mask > 0.5)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-10)
    assert got[1, 2] == 0 and got.sum() > 0


def test_cahp_salience_options(setup):
    m, ad, data = setup
    options = (
        {"salience_kind": "fisher"},
        {"salience_labels": "predicted"},
        {"round_fraction": 0.5},
        {"loss_below": 1.0, "coverage_from": 1.0, "coverage_full": 1.0},  # clusters at every budget
    )
    for kw in options:
        sel = CAHP(m, ad, data, seed=0, **kw)
        masks = sel.masks([9, 6, 3])
        assert [int(masks[k].sum()) for k in (9, 6, 3)] == [9, 6, 3]
        assert all(sel.info[k] == v for k, v in kw.items())
        if "loss_below" in kw:  # every round measured its multi-head clusters' candidates
            assert sel.info["loss_evaluations"] > 0 and sel.info["timings"]["representative_loss_s"] > 0
    with pytest.raises(ValueError, match="round_fraction"):
        CAHP(m, ad, data, round_fraction=0.0)


def test_rivals_are_scored_on_the_same_selection_examples(setup):
    """Each rival method at the chosen count, paired with the chosen plan: the accuracy gap equals the
    discordant counts over the selection examples, and the plan and the one-line note agree."""
    from cahp_edge import plots
    from cahp_edge.prune.salience import masked_eval

    m, ad, data = setup
    plan = select_heads(m, ad, data, PruneOptions(method="cahp", heads=5, rivals="michel,uniform,random"))
    rivals = plan.meta["rivals"]
    assert [r["method"] for r in rivals] == ["michel", "uniform", "random"]
    n = data.select.num_examples
    ours = masked_eval(m, ad, data.select, torch.tensor(plan.mask(), dtype=torch.float32))[0]
    for r in rivals:
        assert r["heads"] == 5 and r["chosen_accuracy"] == pytest.approx(ours)
        gap = (r["only_rival"] - r["only_chosen"]) / n
        assert r["selection_accuracy"] - r["chosen_accuracy"] == pytest.approx(gap)
        assert 0.0 <= r["mcnemar_p"] <= 1.0
    note = plots.better_rival(plan.meta)
    best = max(rivals, key=lambda r: r["selection_accuracy"])
    if best["selection_accuracy"] > best["chosen_accuracy"]:
        assert note.startswith(f"{best['method']} scores {100 * best['selection_accuracy']:.1f}% vs cahp")
        assert f"--method {best['method']}" in note
    else:
        assert note is None
    off = select_heads(m, ad, data, PruneOptions(method="cahp", heads=5, rivals="none"))
    assert "rivals" not in off.meta
    same = select_heads(m, ad, data, PruneOptions(method="michel", heads=5, rivals="michel"))
    assert "rivals" not in same.meta  # the chosen method is not its own rival


def test_better_rival_note_wording():
    from cahp_edge import plots

    row = {"method": "michel", "heads": 24, "selection_accuracy": 0.581, "chosen_accuracy": 0.557,
           "only_chosen": 10, "only_rival": 22, "mcnemar_p": 0.0501}
    assert plots.better_rival({"method": "cahp", "rivals": [row]}) == (
        "michel scores 58.1% vs cahp 55.7% on the selection split at 24 heads (+2.4 pt, McNemar p = 0.05 "
        "on 32 differing examples); to ship its plan, pass --method michel")
    worse = {**row, "selection_accuracy": 0.55}
    assert plots.better_rival({"method": "cahp", "rivals": [worse]}) is None
    assert plots.better_rival({"method": "cahp"}) is None


@pytest.mark.parametrize("bad", ["michle", "cahp,foo", "none,michel"])
def test_unknown_rival_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="--rivals"):
        PruneOptions(rivals=bad)
