"""Joint head + FFN-neuron selection under one budget (issue 15, items 2, 3, 6): the budget search on
synthetic cost tables (against brute force), uniform width, CAHP's coverage rule for neurons, and
select_units on a tiny model (exact MAC speedups, bad budgets)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from cahp_edge.arch import get_adapter
from cahp_edge.errors import UsageError
from cahp_edge.model.accounting import ideal_speedup, model_cost
from cahp_edge.model.reshape import reshape
from cahp_edge.prune.batches import Batches
from cahp_edge.prune.budget import fill_budget, round_down, top_mask, uniform_choice
from cahp_edge.prune.cost import UnitCost
from cahp_edge.prune.neurons import complement_neurons
from cahp_edge.prune.select import PruneOptions, select_heads
from cahp_edge.prune.sweep import SelectionData
from cahp_edge.prune.units import mean_length
from tests.helpers.tiny import tiny_batch, tiny_model

torch.set_num_threads(1)
TABLE = UnitCost(per_head=0.31, per_neuron=0.0123, fixed=2.0, unit="ms", source="synthetic table")


def _brute(head_imp, neuron_imp, cost, budget):
    """Best kept importance over every head subset and every neuron subset (tiny instances only)."""
    hs, ns = head_imp.flatten().tolist(), neuron_imp.flatten().tolist()
    best = -1.0
    for h in itertools.product([0, 1], repeat=len(hs)):
        for n in itertools.product([0, 1], repeat=len(ns)):
            if cost.of([sum(h)], [sum(n)]) <= budget + 1e-9:
                best = max(best, sum(a * b for a, b in zip(h, hs, strict=True))
                           + sum(a * b for a, b in zip(n, ns, strict=True)))
    return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budget", [2.2, 2.5, 2.9, 3.4])
def test_fill_budget_respects_a_synthetic_table_and_matches_brute_force(seed, budget):
    g = torch.Generator().manual_seed(seed)
    head_imp, neuron_imp = torch.rand(1, 4, generator=g), torch.rand(1, 6, generator=g) * 0.2
    sets = {k: top_mask(head_imp, k) for k in range(5)}
    c = fill_budget(sets, head_imp, neuron_imp, TABLE, budget)
    assert c.cost <= budget + 1e-9
    assert c.cost == pytest.approx(TABLE.of(c.heads_per_layer, c.neurons_per_layer))
    # head sets ranked by importance + neurons by importance == the exhaustive optimum (linear costs)
    assert c.value == pytest.approx(_brute(head_imp, neuron_imp, TABLE, budget), abs=1e-6)


def test_fill_budget_refuses_a_budget_below_the_fixed_cost():
    with pytest.raises(ValueError, match="no head set fits"):
        fill_budget({0: torch.zeros(1, 4)}, torch.ones(1, 4), torch.ones(1, 6), TABLE, 1.9)


def test_round_down_keeps_multiples_and_the_most_important():
    imp = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.6, 0.4, 0.05]])
    m = top_mask(imp, 7)  # keeps .9 .8 .7 .6 .5 .4 .3
    r = round_down(m, imp, 4)
    assert int(r.sum()) == 4 and r[0].nonzero().flatten().tolist() == [0, 3, 6, 7]


def test_uniform_width_keeps_the_same_fraction_in_every_layer():
    g = torch.Generator().manual_seed(0)
    hi, ni = torch.rand(3, 4, generator=g), torch.rand(3, 48, generator=g)
    budget = TABLE.of([4] * 3, [48] * 3) / 2
    c = uniform_choice(hi, ni, TABLE, budget, multiple=8)
    assert c.cost <= budget and len(set(c.heads_per_layer)) == 1 and len(set(c.neurons_per_layer)) == 1
    assert c.neurons_per_layer[0] % 8 == 0
    for layer in range(3):  # each layer's most important neurons
        kept = c.neurons[layer].bool()
        assert ni[layer][kept].min() >= ni[layer][~kept].max()


def _grouped_signatures(groups: int, per: int, s: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(groups, s, generator=g)
    x = centres.repeat_interleave(per, 0) + 0.05 * torch.randn(groups * per, s, generator=g)
    return x / x.norm(dim=1, keepdim=True)


def test_neuron_coverage_keeps_one_per_group_when_cut_deep_and_ranks_when_mild():
    sig = _grouped_signatures(groups=4, per=16)  # 64 neurons in 4 correlated groups
    imp = torch.linspace(1, 0, 64)[None]  # group 0 holds the 16 most important
    deep = complement_neurons(top_mask(imp, 4), imp, [sig], coverage_from=0.125, coverage_full=0.0625)
    kept = deep[0].nonzero().flatten()
    assert len(kept) == 4 and sorted((kept // 16).tolist()) == [0, 1, 2, 3]  # importance alone: group 0 only
    assert kept.tolist() == [0, 16, 32, 48]  # each group's most important member
    mild = top_mask(imp, 32)
    assert torch.equal(complement_neurons(mild, imp, [sig], 0.125, 0.0625), mild)  # 50% kept: ranking


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    m = tiny_model("bert", num_labels=3)

    def mk(seed):
        b = tiny_batch(m, batch=8, seq=12, seed=seed)
        b["labels"] = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(seed))
        return b

    return m, get_adapter(m.config), SelectionData(Batches([mk(1), mk(2)]), Batches([mk(3)]))


@pytest.mark.parametrize("method", ["cahp", "fisher", "uniform"])
@pytest.mark.parametrize("speedup", [1.5, 2.0, 3.0])
def test_select_units_meets_the_speedup_on_the_physical_model(setup, method, speedup):
    m, ad, data = setup
    plan = select_heads(m, ad, data, PruneOptions(method=method, units="heads+neurons", speedup=speedup))
    assert plan.prunes_neurons and plan.meta["budget_source"] == "--speedup"
    pruned = reshape(m, plan, ad)
    T = mean_length(data.calib)  # the budget's sequence length (real tokens); accounting counts the same MACs
    assert sum(int(b["attention_mask"].sum()) for b in data.calib) / 16 == T
    got = ideal_speedup(model_cost(m, T, ad), model_cost(pruned, T, ad))
    assert got >= speedup - 1e-9 and got == pytest.approx(plan.meta["speedup_ideal"], rel=1e-3)
    assert got < speedup * 1.15  # the budget is used, not wasted


def test_select_units_knee_and_bad_budgets(setup):
    m, ad, data = setup
    plan = select_heads(m, ad, data, PruneOptions(method="fisher", units="heads+neurons"))
    assert plan.meta["budget_source"] == "knee" and len(plan.meta["curve"]) == 8  # dense + 7 speedups
    for p in plan.meta["curve"][1:]:  # judged after the least-squares re-fit, masked accuracy beside it
        assert 0 <= p["accuracy"] <= 1 and 0 <= p["accuracy_masked"] <= 1
    with pytest.raises(UsageError, match="selects attention heads only"):
        select_heads(m, ad, data, PruneOptions(method="michel", units="heads+neurons", speedup=2))
    with pytest.raises(UsageError, match="pass --speedup S instead"):
        select_heads(m, ad, data, PruneOptions(units="heads+neurons", heads=5))
    with pytest.raises(UsageError, match=r"at most 2\.17x .* pass --speedup 2\.17 or less"):
        select_heads(m, ad, data, PruneOptions(units="heads", speedup=3.0))  # heads alone cannot reach 3x
    head_only = select_heads(m, ad, data, PruneOptions(units="heads", speedup=1.5, rivals="none"))
    pruned = reshape(m, head_only, ad)
    T = mean_length(data.calib)
    assert ideal_speedup(model_cost(m, T, ad), model_cost(pruned, T, ad)) >= 1.5
    with pytest.raises(UsageError, match="--speedup"):
        PruneOptions(speedup=0.5)


def test_latency_budget_on_a_synthetic_table(setup):
    m, ad, data = setup
    table = UnitCost(per_head=0.05, per_neuron=0.002, fixed=1.0, unit="ms", source="synthetic table")
    dense = table.of([4] * 3, [48] * 3)  # 1 + 0.6 + 0.288 ms
    for budget in (1.2, 1.5, dense - 0.01):
        plan = select_heads(m, ad, data, PruneOptions(method="fisher", units="heads+neurons",
                                                      latency_budget_ms=budget), cost=table)
        predicted = table.of(plan.heads_per_layer, plan.neurons_per_layer)
        assert predicted <= budget and predicted == pytest.approx(plan.meta["predicted_cost"])
        assert budget - predicted < 0.05 + 1e-9  # filled up to one head's cost
        assert plan.meta["budget_source"] == "--latency-budget-ms" and plan.meta["cost_model"]["unit"] == "ms"
    with pytest.raises(UsageError, match=r"fastest plan \(no heads, no FFN neurons\) is predicted at 1\.00"):
        select_heads(m, ad, data, PruneOptions(method="fisher", units="heads+neurons", latency_budget_ms=0.9),
                     cost=table)
    with pytest.raises(UsageError, match="needs a measured latency cost model"):
        select_heads(m, ad, data, PruneOptions(method="fisher", units="heads+neurons", latency_budget_ms=5))
    with pytest.raises(UsageError, match="needs --units heads\\+neurons"):
        select_heads(m, ad, data, PruneOptions(units="heads", latency_budget_ms=5), cost=table)


def test_budget_accuracy_is_the_reconstructed_models_as_an_independent_pass_measures(setup):
    from cahp_edge.model.reconstruct import reconstruct
    from cahp_edge.prune.salience import masked_eval

    m, ad, data = setup
    plan = select_heads(m, ad, data, PruneOptions(method="fisher", units="heads+neurons", speedup=2.5))
    pruned = reshape(m, plan, ad)
    reconstruct(pruned, m, ad, list(data.calib))
    acc, loss = masked_eval(pruned, ad, data.select)
    point = plan.meta["curve"][0]
    assert point["accuracy"] == acc and point["loss"] == pytest.approx(loss, rel=1e-6)
    masked = select_heads(m, ad, data, PruneOptions(method="fisher", units="heads+neurons", speedup=2.5,
                                                    knee_accuracy="masked"))
    assert masked.meta["curve"][0]["accuracy"] == point["accuracy_masked"]
    from cahp_edge import plots  # the prune line and the card say which accuracy the drop is

    assert plots.drop_text(plots.kept_drop(plan.meta)).endswith("pt after the least-squares re-fit)")
    assert plots.drop_text(plots.kept_drop(masked.meta)).endswith("pt masked, before recovery)")


def test_joint_rivals_are_scored_at_the_same_budget_and_named_when_better(setup):
    from cahp_edge import plots
    from cahp_edge.prune.paired import mcnemar

    m, ad, data = setup
    plan = select_heads(m, ad, data, PruneOptions(method="fisher", units="heads+neurons", speedup=2.0))
    rivals = plan.meta["rivals"]
    assert [r["method"] for r in rivals] == ["uniform"]  # default "oneshot,uniform": oneshot is heads-only
    r = rivals[0]
    assert r["chosen_accuracy"] == plan.meta["curve"][0]["accuracy"]
    assert r["at"].startswith("the same cost (") and r["only_chosen"] + r["only_rival"] <= 8
    a, b = r["only_chosen"], r["only_rival"]  # the exact test of the discordant pairs, recomputed
    ours = torch.tensor([True] * a + [False] * b, dtype=torch.bool)
    theirs = torch.tensor([False] * a + [True] * b, dtype=torch.bool)
    assert r["mcnemar_p"] == mcnemar(ours, theirs)["mcnemar_p"]
    fake = {**plan.meta, "rivals": [{**r, "selection_accuracy": r["chosen_accuracy"] + 0.125}]}
    assert "on the selection split at the same cost (" in plots.better_rival(fake)


def test_speedup_beyond_a_large_fixed_cost_is_a_one_line_error_and_the_knee_skips_it(setup):
    m, ad, data = setup
    table = UnitCost(per_head=0.01, per_neuron=0.0005, fixed=1.0, unit="ms", source="synthetic table")
    dense = table.of([4] * 3, [48] * 3)  # 1.192 ms: no plan is faster than 1.19x
    with pytest.raises(UsageError, match=r"--speedup 2 is out of reach.*1\.19x.*--speedup 1\.19 or less"):
        select_heads(m, ad, data, PruneOptions(units="heads+neurons", speedup=2), cost=table)
    plan = select_heads(m, ad, data, PruneOptions(method="fisher", units="heads+neurons"), cost=table)
    assert plan.meta["budget_source"] == "knee" and len(plan.meta["curve"]) == 1  # 1.5x+ is out of reach
    assert plan.meta["predicted_cost"] == pytest.approx(dense) and plan.neurons_per_layer == [48] * 3


@pytest.mark.parametrize("method", ["fisher", "uniform", "cahp"])
def test_target_neuron_multiple_rounds_every_layer(setup, method):
    m, ad, data = setup
    plan = select_heads(
        m, ad, data, PruneOptions(method=method, units="heads+neurons", speedup=2.0), multiple=8)
    assert all(n % 8 == 0 for n in plan.neurons_per_layer) and plan.meta["neuron_multiple"] == 8
    assert plan.meta["speedup_ideal"] >= 2.0


def test_every_shipped_profile_states_its_neuron_multiple():
    import tomllib

    from cahp_edge.targets.profile import list_targets, load_target

    for name in list_targets():
        t = load_target(name)
        assert t.neuron_multiple >= 1
        raw = tomllib.loads(Path(t.source).read_text(encoding="utf-8"))
        assert "neuron_multiple" in raw, f"{name} does not state its rule"
