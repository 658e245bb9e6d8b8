"""Joint selection of attention heads and FFN neurons under one cost budget (issue 15).

    plan = select_units(model, adapter, data, PruneOptions(units="heads+neurons", speedup=3))

1. Importance of every head and neuron: the diagonal Fisher of its mask (:mod:`.fisher`), against the
   dense model's predictions (``--salience-labels predicted``, no labels needed) or the gold labels.
2. Candidate head sets per head count: ``fisher`` ranks heads by Fisher (Kwon et al. 2022); ``cahp``
   takes CAHP's complementary sets (JSD graph + salience + budget-aware coverage: docs/cahp.md);
   ``uniform`` keeps the same fraction of heads and neurons in every layer.
3. :func:`.budget.fill_budget` buys the most important neurons with what each head set leaves of the
   budget and keeps the split of largest kept importance. ``cahp`` then applies CAHP's coverage rule to
   each layer's neurons (:mod:`.neurons`): a layer cut below ``coverage_from`` keeps one neuron per
   cluster of activation signatures before filling by importance.
4. Each budget's selection accuracy is measured after the least-squares re-fit to the dense model on the
   calibration rows (``--knee-accuracy reconstructed``, what ``--recover-method reconstruct`` ships;
   masked accuracy is recorded beside it): masked, a 2x cut of MiniLM loses ~5 points that the re-fit
   wins back, so a knee read from masked accuracy would stop far too early.
5. Budget: ``--speedup S`` keeps at most dense cost / S, ``--latency-budget-ms X`` at most X ms of a
   measured cost model; without either, a grid of speedups is scored on the selection split and the knee
   of accuracy vs kept cost (latency when measured) is taken (guarded by ``--max-drop``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.errors import UsageError
from cahp_edge.model.mask import NeuronMask
from cahp_edge.plan import HeadPlan
from cahp_edge.prune.budget import Choice, fill_budget, top_mask, uniform_choice
from cahp_edge.prune.cost import UnitCost, mac_cost
from cahp_edge.prune.fisher import unit_fisher
from cahp_edge.prune.knee import find_knee
from cahp_edge.prune.options import JOINT_METHODS, METHODS, PruneOptions
from cahp_edge.prune.provenance import versions
from cahp_edge.prune.salience import accuracy_of, dense_predictions, masked_eval, masked_outcomes
from cahp_edge.prune.sweep import SelectionData, default_grid

# speedups (dense cost / kept cost) scored when no budget is given: the knee is taken among them
SPEEDUP_GRID = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)


def mean_length(batches) -> float:
    """Mean real (unpadded) tokens per example: the sequence length the MAC costs are taken at."""
    toks = sum(int(b["attention_mask"].sum()) for b in batches)
    n = sum(int(b["attention_mask"].shape[0]) for b in batches)
    return toks / max(1, n)


def outcomes(model, adapter, data: SelectionData, choice: Choice, kind: str) -> tuple[torch.Tensor, float]:
    """((N,) bool correct per selection example, mean loss) of a choice: its heads and neurons masked
    (``kind="masked"``), or cut out physically and re-fit by least squares to the dense model on the
    calibration rows (``"reconstructed"``: what ``--recover-method reconstruct`` ships)."""
    if kind == "masked":
        with NeuronMask(model, adapter, choice.neurons):
            return masked_outcomes(model, adapter, data.select, choice.heads)
    from cahp_edge.model.reconstruct import reconstruct
    from cahp_edge.model.reshape import reshape

    pruned = reshape(model, plan_of(choice), adapter)
    reconstruct(pruned, model, adapter, list(data.calib))
    return masked_outcomes(pruned, adapter, data.select)


def plan_of(choice: Choice, meta: dict | None = None) -> HeadPlan:
    kept_h = tuple(tuple(int(i) for i in r.nonzero().flatten()) for r in choice.heads)
    kept_n = tuple(tuple(int(i) for i in r.nonzero().flatten()) for r in choice.neurons)
    return HeadPlan(tuple(choice.heads.shape[1] for _ in kept_h), kept_h, dict(meta or {}),
                    tuple(choice.neurons.shape[1] for _ in kept_n), kept_n)


class _Joint:
    """Candidate head sets + unit importance for one method; ``choose(budget)`` -> Choice."""

    def __init__(self, model, adapter, data: SelectionData, options: PruneOptions, cost: UnitCost,
                 multiple: int, timings: dict, importance: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> None:
        self.model, self.adapter, self.options = model, adapter, options
        self.cost, self.multiple = cost, multiple
        t0 = time.perf_counter()
        if importance is None:
            targets = dense_predictions(model, data.calib) if options.salience_labels == "predicted" else None
            importance = unit_fisher(model, adapter, data.calib, targets)
        self.head_imp, self.neuron_imp = importance  # (L, H), (L, I)
        timings["salience_s"] = time.perf_counter() - t0
        n = int(self.head_imp.numel())
        self.head_sets: dict[int, torch.Tensor] = {0: torch.zeros_like(self.head_imp)}
        t0 = time.perf_counter()
        if options.method == "fisher":
            self.head_sets.update({k: top_mask(self.head_imp, k) for k in range(1, n + 1)})
        elif options.method == "cahp":
            sel = METHODS["cahp"].load()(model, adapter, data, options.seed, **options.method_options())
            counts = sorted(set(default_grid(n, 1, 24)) | {n}, reverse=True)
            self.head_sets.update({k: m.float() for k, m in sel.masks(counts).items()})
            from cahp_edge.prune.neurons import neuron_signatures

            self.signatures = neuron_signatures(model, adapter, data.calib, seed=options.seed)
        timings["head_sets_s"] = time.perf_counter() - t0

    def choose(self, budget: float) -> Choice:
        if self.options.method == "uniform":
            return uniform_choice(self.head_imp, self.neuron_imp, self.cost, budget, self.multiple)
        c = fill_budget(self.head_sets, self.head_imp, self.neuron_imp, self.cost, budget, self.multiple)
        if self.options.method == "cahp":
            from cahp_edge.prune.neurons import complement_neurons

            c.neurons = complement_neurons(c.neurons, self.neuron_imp, self.signatures,
                                           self.options.coverage_from, self.options.coverage_full,
                                           self.options.seed)
        return c


def check_cost(o: PruneOptions, cost: UnitCost | None) -> None:
    """A latency budget needs a latency cost model, and one some plan can meet (one line each)."""
    if o.latency_budget_ms is None:
        return
    if cost is None or cost.unit != "ms":
        raise UsageError("--latency-budget-ms needs a measured latency cost model",
                         f"this plan's costs are {cost.source if cost else 'MACs'}",
                         "build for a target this host can time (an x86 target on an x86 host), "
                         "or pass --speedup")
    if o.latency_budget_ms <= cost.fixed:
        raise UsageError(f"--latency-budget-ms {o.latency_budget_ms:g} is below every plan",
                         f"the fastest plan (no heads, no FFN neurons) is predicted at {cost.fixed:.2f} ms "
                         f"({cost.source})", f"pass --latency-budget-ms above {cost.fixed:.2f}")


def select_units(model: nn.Module, adapter: Adapter, data: SelectionData, options: PruneOptions,
                 sources: dict | None = None, progress: Callable[[str, int, int], None] | None = None,
                 multiple: int = 1, cost: UnitCost | None = None) -> HeadPlan:
    """A plan over heads and FFN neurons (``cahp-plan/2``); ``meta`` documents how it was chosen.
    ``cost``: the target's measured cost model (default: MACs at the calibration data's mean length)."""
    t_start = time.perf_counter()
    tick = progress or (lambda *_: None)
    heads, widths = adapter.heads_per_layer(model), adapter.neurons_per_layer(model)
    if len(set(heads)) != 1 or len(set(widths)) != 1:
        raise UsageError("the model is already pruned (layers have different head counts or FFN widths)",
                         f"heads {heads}, FFN widths {widths}", "select units on the dense model")
    torch.manual_seed(options.seed)
    cost = cost or mac_cost(adapter, model.config, mean_length(data.calib))
    check_cost(options, cost)
    dense_cost = cost.of(heads, widths)
    timings: dict = {}
    tick("select units", 0, 1)
    joint = _Joint(model, adapter, data, options, cost, multiple, timings)
    tick("select units", 1, 1)
    dense_acc, dense_loss = masked_eval(model, adapter, data.select)
    fixed_budget = options.speedup is not None or options.latency_budget_ms is not None
    if options.latency_budget_ms is not None:
        budgets = [min(dense_cost, options.latency_budget_ms)]
    elif options.speedup:
        if dense_cost / options.speedup < cost.fixed:
            best = np.floor(dense_cost / cost.fixed * 100) / 100
            raise UsageError(f"--speedup {options.speedup:g} is out of reach",
                             f"even a plan with no heads and no FFN neurons costs {cost.fixed:.4g} of the "
                             f"dense {dense_cost:.4g} {cost.unit}, {best:.2f}x ({cost.source})",
                             f"pass --speedup {best:.2f} or less")
        budgets = [dense_cost / options.speedup]
    else:  # grid points no plan can meet (a large fixed cost) are left out
        budgets = [dense_cost / s for s in SPEEDUP_GRID if dense_cost / s >= cost.fixed]
    t0 = time.perf_counter()
    points, choices, correct = [], {}, {}
    for i, b in enumerate(budgets):
        tick("knee sweep", i, len(budgets))
        c = joint.choose(b)
        ok_m, loss_m = outcomes(model, adapter, data, c, "masked")
        ok, loss = (ok_m, loss_m) if options.knee_accuracy == "masked" else \
            outcomes(model, adapter, data, c, "reconstructed")
        acc, acc_m = accuracy_of(ok), accuracy_of(ok_m)
        k = round(1000 * c.cost / dense_cost)  # kept cost in permille of dense: the knee's axis
        choices[k], correct[k] = (c, b), ok
        points.append({"k": k, "speedup": round(dense_cost / c.cost, 3), "heads_kept": int(c.heads.sum()),
                       "neurons_kept": int(c.neurons.sum()), "accuracy": acc, "loss": loss,
                       "accuracy_masked": acc_m, "cost": c.cost})
    tick("knee sweep", len(budgets), len(budgets))
    timings["sweep_s"] = time.perf_counter() - t0
    meta: dict = {"method": options.method, "units": "heads+neurons",
                  "options": options.model_dump(mode="json"),
                  "seed": options.seed, "selection_accuracy_dense": dense_acc, "cost_model": cost.to_dict(),
                  "dense_cost": dense_cost, "neuron_multiple": multiple}
    if fixed_budget:
        k_star = points[0]["k"]
        meta["budget_source"] = "--speedup" if options.speedup else "--latency-budget-ms"
        meta["curve"] = points
    else:
        pts = [{"k": 1000, "speedup": 1.0, "heads_kept": sum(heads), "neurons_kept": sum(widths),
                "accuracy": dense_acc, "loss": dense_loss, "accuracy_masked": dense_acc, "cost": dense_cost},
               *points]
        if len(pts) > 1:
            knee = find_knee([p["k"] for p in pts], [100 * p["accuracy"] for p in pts], options.degree,
                             options.max_drop)
            k_star = min(k for k in sorted(p["k"] for p in pts) if k >= knee.k)
        else:  # no grid speedup is reachable (the fixed cost is most of the model): keep everything
            knee, k_star = None, 1000
        if k_star == 1000:
            choices[1000] = (Choice(torch.ones_like(joint.head_imp), torch.ones_like(joint.neuron_imp),
                                    dense_cost, 0.0), dense_cost)
        meta.update({"budget_source": "knee", "curve": pts})
        if knee is not None:
            meta.update({"knee": knee.to_dict(), "fit_coefficients": knee.coef, "fit_domain": knee.domain})
    chosen, budget = choices[k_star]
    rivals = [r for r in options.rival_methods() if r in JOINT_METHODS]
    if rivals and k_star < 1000:
        meta["rivals"] = _rivals(joint, data, rivals, budget, chosen, correct[k_star], tick)
        timings["rivals_s"] = round(sum(r["seconds"] for r in meta["rivals"]), 2)
    at = next(p for p in meta["curve"] if p["k"] == k_star)
    meta.update({"k_star": k_star, "speedup_ideal": round(dense_cost / chosen.cost, 3),
                 "predicted_cost": chosen.cost,
                 "selection_accuracy_when": "after the least-squares re-fit"
                 if options.knee_accuracy == "reconstructed" else "masked, before recovery",
                 "selection_drop_points": round(100 * (dense_acc - at["accuracy"]), 2),
                 "salience": joint.head_imp.tolist(), "versions": versions(), "data": dict(sources or {}),
                 "layers_heads": heads})
    timings["selection_s"] = timings["salience_s"] + timings["head_sets_s"]
    timings["total_s"] = time.perf_counter() - t_start
    meta["timings"] = timings
    return plan_of(chosen, meta)


def _rivals(joint: _Joint, data: SelectionData, names: list[str], budget: float, chosen: Choice,
            ours: torch.Tensor, tick) -> list[dict]:
    """Each rival joint method at the same budget, scored like the chosen plan on the same selection
    rows (same importance, same accuracy kind), with the exact McNemar test of the pair."""
    from cahp_edge.prune.paired import _test_name, mcnemar, p_value

    o, out = joint.options, []
    for i, name in enumerate(names):
        tick("rival methods", i, len(names))
        t0 = time.perf_counter()
        other = _Joint(joint.model, joint.adapter, data, PruneOptions(**{**o.model_dump(), "method": name}),
                       joint.cost, joint.multiple, {}, (joint.head_imp, joint.neuron_imp))
        c = other.choose(budget)
        theirs, _ = outcomes(joint.model, joint.adapter, data, c, o.knee_accuracy)
        test = mcnemar(ours, theirs)
        out.append({"method": name, "heads": int(c.heads.sum()), "neurons": int(c.neurons.sum()),
                    "at": f"the same cost ({chosen.cost:.4g} {joint.cost.unit})",
                    "selection_accuracy": accuracy_of(theirs), "chosen_accuracy": accuracy_of(ours),
                    "only_chosen": test["only_reference"], "only_rival": test["only_this"],
                    "mcnemar_p": p_value(test), "test": _test_name(test),
                    "seconds": round(time.perf_counter() - t0, 2)})
    tick("rival methods", len(names), len(names))
    return out


def heads_for_speedup(adapter: Adapter, model: nn.Module, data: SelectionData, speedup: float) -> int:
    """Head count of a head-only plan that meets ``speedup`` (MAC-proportional), else a one-line error
    naming the fastest head-only plan."""
    heads, widths = adapter.heads_per_layer(model), adapter.neurons_per_layer(model)
    cost = mac_cost(adapter, model.config, mean_length(data.calib))
    dense = cost.of(heads, widths)
    floor = cost.of([0] * len(heads), widths) + cost.per_head  # a head-only plan keeps at least one head
    if dense / speedup < floor:
        best = np.floor(dense / floor * 100) / 100  # rounded down: the value shown is reachable
        raise UsageError(f"--speedup {speedup:g} is out of reach for head pruning alone",
                         f"keeping a single head gives at most {best:.2f}x (FFN neurons are "
                         f"{100 * cost.per_neuron * sum(widths) / dense:.0f}% of the MACs)",
                         f"pass --speedup {best:.2f} or less, or --units heads+neurons")
    return min(sum(heads), 1 + int(np.floor((dense / speedup - floor) / cost.per_head + 1e-9)))
