"""Head selection: ``select_heads(model, adapter, data, options) -> HeadPlan``.

    cahp-edge prune --model DIR --data train.txt --out plan_dir      # CLI entry (cahp_edge.cli.prune)

Methods: ``cahp`` (:mod:`.cahp`) and the baselines of :mod:`.baselines`, all behind one interface.
Without a budget (``heads`` / ``keep_ratio``) the head count is the knee of the accuracy-vs-heads
curve measured on the *selection* split (:mod:`.knee`).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.errors import UsageError
from cahp_edge.plan import HeadPlan
from cahp_edge.prune.knee import check_degree, find_knee
from cahp_edge.prune.salience import masked_eval
from cahp_edge.prune.sweep import HeadIndex, SelectionData, default_grid, run_sweep

METHODS = ("cahp", "michel", "oneshot", "magnitude", "random", "uniform")
# what "selection time" counts (the sweep's accuracy evaluations are excluded)
SELECTION_STAGES = ("signatures_s", "salience_s", "clustering_s", "representative_loss_s")


@dataclass
class PruneOptions:
    method: str = "cahp"
    clustering: str = "spectral"
    schedule: str = "iterative"  # cahp only: iterative | oneshot
    salience_weight: float = 1.0  # cahp only: gamma of the salience-aware graph (0 = plain JSD graph)
    salience_kind: str = "abs"  # cahp only: abs = E|dL/dm| | fisher = E_x (dL_x/dm)^2
    salience_labels: str = "predicted"  # cahp only: predicted (the dense model's own argmax labels) | gold
    round_fraction: float = 0.5  # cahp only: share of the calibration batches used by rounds after the first
    loss_below: float = 0.0  # cahp only: at <= this fraction of heads, representatives by measured loss
    degree: int = 3
    max_drop: float | None = None  # accuracy points (0..100) below the dense model, on the selection split
    heads: int | None = None
    keep_ratio: float | None = None
    floor: int | None = None  # smallest head count of the sweep (default: max(1, N // 16))
    grid_points: int = 14
    seed: int = 0


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
    if o.method not in METHODS:
        raise UsageError(f"unknown method {o.method!r}", f"choose one of {', '.join(METHODS)}", "")
    from cahp_edge.prune.graph import CLUSTERINGS

    if o.clustering not in CLUSTERINGS:
        raise UsageError(
            f"unknown clustering {o.clustering!r}", f"choose one of {', '.join(CLUSTERINGS)}", ""
        )
    check_degree(o.degree)
    from cahp_edge.prune.salience import LABEL_SOURCES, SALIENCE_KINDS

    if o.salience_kind not in SALIENCE_KINDS:
        raise UsageError(
            f"unknown salience {o.salience_kind!r}", f"choose one of {', '.join(SALIENCE_KINDS)}", ""
        )
    if o.salience_labels not in LABEL_SOURCES:
        raise UsageError(
            f"unknown salience labels {o.salience_labels!r}", f"choose one of {', '.join(LABEL_SOURCES)}", ""
        )
    if not 0.0 < o.round_fraction <= 1.0:
        raise UsageError(
            f"--round-fraction {o.round_fraction} is out of range",
            "it is the share of calibration data each later salience round uses",
            "pass a value in (0, 1], e.g. 0.25",
        )
    if not 0.0 <= o.loss_below <= 1.0:
        raise UsageError(
            f"--loss-below {o.loss_below} is out of range",
            "it is a fraction of the model's heads",
            "pass a value in [0, 1], e.g. 0.5 (0 = off)",
        )
    if o.max_drop is not None and not 0 <= o.max_drop <= 100:
        raise UsageError(
            f"--max-drop {o.max_drop} is out of range",
            "it is in accuracy points (0..100)",
            "pass e.g. --max-drop 1.0",
        )
    return resolve_budget(n_total, o.heads, o.keep_ratio)


def make_selector(model: nn.Module, adapter: Adapter, data: SelectionData, o: PruneOptions):
    if o.method == "cahp":
        from cahp_edge.prune.cahp import CAHP

        return CAHP(
            model,
            adapter,
            data,
            o.seed,
            clustering=o.clustering,
            schedule=o.schedule,
            salience_weight=o.salience_weight,
            salience_kind=o.salience_kind,
            salience_labels=o.salience_labels,
            round_fraction=o.round_fraction,
            loss_below=o.loss_below,
        )
    from cahp_edge.prune.baselines import BASELINES

    return BASELINES[o.method](model, adapter, data, o.seed)


def versions() -> dict:
    import transformers

    import cahp_edge

    return {
        "cahp_edge": cahp_edge.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def select_heads(
    model: nn.Module,
    adapter: Adapter,
    data: SelectionData,
    options: PruneOptions,
    sources: dict | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> HeadPlan:
    """Choose the heads to keep; returns a plan whose ``meta`` documents how (see module doc).

    ``progress(task, done, total)``: "select heads" while the selector works (one step: the selector
    has no finer hook), then "knee sweep" per evaluated head count.
    """
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
    torch.manual_seed(options.seed)
    sel = make_selector(model, adapter, data, options)
    dense_acc, _dense_loss = masked_eval(model, adapter, data.select)
    meta: dict = {
        "method": options.method,
        "options": asdict(options),
        "seed": options.seed,
        "selection_accuracy_dense": dense_acc,
    }
    tick = progress or (lambda *_: None)
    tick("select heads", 0, 1)
    if budget is not None:
        masks = sel.masks([budget])
        tick("select heads", 1, 1)
        k_star = budget
        acc, loss = masked_eval(model, adapter, data.select, masks[budget])
        meta.update(
            {
                "budget_source": "--heads/--keep-ratio",
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

        sw = run_sweep(sel, model, adapter, data.select, grid, progress=swept)
        ks = [p.k for p in sw.points]
        accs = [100.0 * p.accuracy for p in sw.points]
        knee = find_knee(ks, accs, options.degree, options.max_drop if options.max_drop is not None else None)
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
    info = dict(sel.info)
    sal = info.pop("salience", None) or info.pop("score", None)
    if sal is not None:
        meta["salience"] = index.unflat(np.asarray(sal)).tolist()
    info.pop("clusters", None)  # per-k labels: large, and derivable from the seed
    meta["selector"] = info
    t = info.get("timings", {})
    t["selection_s"] = sum(t.get(k, 0.0) for k in SELECTION_STAGES)
    t["selection_cpu_s"] = sum(t.get(k.replace("_s", "_cpu_s"), 0.0) for k in SELECTION_STAGES)
    t["total_s"] = time.perf_counter() - t_start
    meta["timings"] = t
    meta["versions"] = versions()
    meta["data"] = dict(sources or {})
    meta["layers_heads"] = index.heads_per_layer
    if getattr(sel, "sig", None) is not None:
        meta["_distance"] = sel.sig.mean_jsd.numpy()  # for the plot; popped before saving
    plan = HeadPlan.from_mask(masks[k_star].tolist(), meta)
    return HeadPlan(tuple(index.heads_per_layer), plan.kept, meta)
