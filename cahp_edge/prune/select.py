"""Head selection: ``select_heads(model, adapter, data, options) -> HeadPlan``.

    cahp-edge prune --model DIR --data train.txt --out plan_dir      # CLI entry (cahp_edge.cli.prune)

Methods: ``cahp`` (:mod:`.cahp`) and the baselines of :mod:`.baselines`, all behind one interface.
Without a budget (``heads`` / ``keep_ratio``) the head count is the knee of the accuracy-vs-heads
curve measured on the *selection* split (:mod:`.knee`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.errors import UsageError
from cahp_edge.plan import HeadPlan
from cahp_edge.prune.knee import find_knee
from cahp_edge.prune.options import METHODS, PruneOptions
from cahp_edge.prune.provenance import versions
from cahp_edge.prune.salience import accuracy_of, masked_eval, masked_outcomes
from cahp_edge.prune.sweep import HeadIndex, SelectionData, default_grid, run_sweep

# what "selection time" counts (the sweep's accuracy evaluations are excluded)
SELECTION_STAGES = ("signatures_s", "salience_s", "clustering_s", "representative_loss_s")


def resolve_budget(n_total: int, heads: int | None, keep_ratio: float | None) -> int | None:
    if heads is not None and keep_ratio is not None:
        raise UsageError("--heads and --keep-ratio both given", "they set the same budget", "pass only one")
    if heads is not None:
        if heads < 1 or heads > n_total:
            raise UsageError(
                f"--heads {heads} is outside the model's head count",
                f"the model has {n_total} heads",
                f"pass --heads between 1 and {n_total}",
            )
        return int(heads)
    if keep_ratio is not None:
        if not 0.0 < keep_ratio <= 1.0:
            raise UsageError(
                f"--keep-ratio {keep_ratio} is out of range",
                "it is the fraction of heads kept",
                "pass a value in (0, 1], e.g. 0.33",
            )
        return max(1, round(keep_ratio * n_total))
    return None


def check_options(o: PruneOptions, n_total: int) -> int | None:
    """The head budget for this model (None: find the knee). Ranges were checked when ``o`` was built."""
    return resolve_budget(n_total, o.heads, o.keep_ratio)


def check_budget(model: nn.Module, adapter: Adapter, data: SelectionData, o: PruneOptions,
                 cost=None) -> None:
    """Every budget error (ranges, a method that cannot prune neurons, a speedup or latency out of reach)
    before any selection work starts: one line each. ``cost``: as for :func:`select_heads`."""
    from cahp_edge.prune.cost import mac_cost
    from cahp_edge.prune.units import check_cost, heads_for_speedup, mean_length

    check_cost(o, cost or mac_cost(adapter, model.config, mean_length(data.calib)))
    if o.units == "heads+neurons":
        return
    check_options(o, sum(adapter.heads_per_layer(model)))
    if o.speedup is not None:
        heads_for_speedup(adapter, model, data, o.speedup)


def make_selector(model: nn.Module, adapter: Adapter, data: SelectionData, o: PruneOptions):
    """The registered method's selector, given the method's own options (see prune.options.METHODS)."""
    return METHODS[o.method].load()(model, adapter, data, o.seed, **o.method_options())


def score_rivals(model, adapter, data: SelectionData, options: PruneOptions, k: int, chosen: torch.Tensor,
                 tick: Callable[[str, int, int], None]) -> list[dict]:
    """Each rival method at the same head count on the same selection examples as the chosen plan:
    accuracy, and the exact McNemar test of the pair (so a user never ships a worse plan because of
    the default method without being told)."""
    from cahp_edge.prune.paired import _test_name, mcnemar, p_value

    ours, _ = masked_outcomes(model, adapter, data.select, chosen)
    out = []
    rivals = options.rival_methods()
    for i, name in enumerate(rivals):
        tick("rival methods", i, len(rivals))
        t0 = time.perf_counter()
        sel = make_selector(model, adapter, data, PruneOptions(**{**options.model_dump(), "method": name}))
        theirs, _ = masked_outcomes(model, adapter, data.select, sel.masks([k])[k])
        test = mcnemar(ours, theirs)
        out.append({"method": name, "heads": k, "selection_accuracy": accuracy_of(theirs),
                    "chosen_accuracy": accuracy_of(ours), "only_chosen": test["only_reference"],
                    "only_rival": test["only_this"], "mcnemar_p": p_value(test), "test": _test_name(test),
                    "seconds": round(time.perf_counter() - t0, 2)})
    tick("rival methods", len(rivals), len(rivals))
    return out


def select_heads(
    model: nn.Module,
    adapter: Adapter,
    data: SelectionData,
    options: PruneOptions,
    sources: dict | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    cost=None,
    multiple: int = 1,
) -> HeadPlan:
    """Choose the heads to keep; returns a plan whose ``meta`` documents how (see module doc).

    ``progress(task, done, total)``: "select heads" while the selector works (one step: the selector
    has no finer hook), then "knee sweep" per evaluated head count. With ``options.units ==
    "heads+neurons"`` the plan also prunes FFN neurons under one cost budget (:mod:`.units`), counted in
    ``cost`` (a :class:`.budget.UnitCost`: a target's measured latency model; default MACs), each layer
    keeping a multiple of ``multiple`` neurons (the target profile's ``neuron_multiple``).
    """
    if options.units == "heads+neurons":
        from cahp_edge.prune.units import select_units

        return select_units(model, adapter, data, options, sources, progress, multiple=multiple, cost=cost)
    t_start = time.perf_counter()
    index = HeadIndex(adapter.heads_per_layer(model))
    if len(set(index.heads_per_layer)) != 1:
        raise UsageError(
            "the model is already pruned (layers have different head counts)",
            f"heads per layer {index.heads_per_layer}",
            "select heads on the dense model",
        )
    n = index.n
    budget = check_options(options, n)
    if options.speedup is not None:
        from cahp_edge.prune.units import heads_for_speedup

        budget = heads_for_speedup(adapter, model, data, options.speedup)
    torch.manual_seed(options.seed)
    sel = make_selector(model, adapter, data, options)
    dense_acc, dense_loss = masked_eval(model, adapter, data.select)
    meta: dict = {
        "method": options.method,
        "options": options.model_dump(mode="json"),
        "seed": options.seed,
        "selection_accuracy_dense": dense_acc,
    }
    tick = progress or (lambda *_: None)
    sel.progress = tick  # signatures per batch, selection rounds (CAHP); others report "select heads"
    tick("select heads", 0, 1)
    if budget is not None:
        masks = sel.masks([budget])
        tick("select heads", 1, 1)
        k_star = budget
        acc, loss = masked_eval(model, adapter, data.select, masks[budget])
        meta.update(
            {
                "budget_source": "--speedup" if options.speedup else "--heads/--keep-ratio",
                "curve": [{"heads": budget, "accuracy": acc, "loss": loss}],
            }
        )
    else:
        floor = options.floor or max(1, n // 16)
        grid = default_grid(n, floor, options.grid_points)
        def swept(done: int, total: int) -> None:
            if done == 0:
                tick("select heads", 1, 1)  # masks come before the first evaluation
            tick("knee sweep", done, total)

        sw = run_sweep(sel, model, adapter, data.select, grid, progress=swept,
                       known={n: (dense_acc, dense_loss)})
        ks = [p.k for p in sw.points]
        accs = [100.0 * p.accuracy for p in sw.points]
        knee = find_knee(ks, accs, options.degree, options.max_drop)
        # masks exist on the grid only: take the smallest grid count at or above the knee
        k_star = min(k for k in ks if k >= knee.k)
        masks = sw.masks
        meta.update(
            {
                "budget_source": "knee",
                "knee": knee.to_dict(),
                "knee_snapped_to_grid": k_star,
                "curve": [p.to_dict() for p in sw.points],
                "fit_coefficients": knee.coef,
                "fit_domain": knee.domain,
                "fitted_curve": knee.fitted,
            }
        )
        sel.info.setdefault("timings", {})["sweep_s"] = sw.seconds
    meta["k_star"] = k_star
    at_k = next((p for p in meta["curve"] if p["heads"] == k_star), None)
    if at_k is not None:  # what the chosen count costs on the selection split, before any recovery
        meta["selection_drop_points"] = round(100 * (dense_acc - at_k["accuracy"]), 2)
    if options.rival_methods() and k_star < n:
        meta["rivals"] = score_rivals(model, adapter, data, options, k_star, masks[k_star], tick)
    info = dict(sel.info)
    sal = info.pop("salience", None) or info.pop("score", None)
    if sal is not None:
        meta["salience"] = index.unflat(np.asarray(sal)).tolist()
    info.pop("clusters", None)  # per-k labels: large, and derivable from the seed
    meta["selector"] = info
    t = info.get("timings", {})
    t["selection_s"] = sum(t.get(k, 0.0) for k in SELECTION_STAGES)
    t["selection_cpu_s"] = sum(t.get(k.replace("_s", "_cpu_s"), 0.0) for k in SELECTION_STAGES)
    if meta.get("rivals"):
        t["rivals_s"] = round(sum(r["seconds"] for r in meta["rivals"]), 2)
    t["total_s"] = time.perf_counter() - t_start
    meta["timings"] = t
    meta["versions"] = versions()
    meta["data"] = dict(sources or {})
    meta["layers_heads"] = index.heads_per_layer
    if getattr(sel, "sig", None) is not None:
        meta["_distance"] = sel.sig.mean_jsd.numpy()  # for the plot; popped before saving
    plan = HeadPlan.from_mask(masks[k_star].tolist(), meta)
    return HeadPlan(tuple(index.heads_per_layer), plan.kept, meta)
