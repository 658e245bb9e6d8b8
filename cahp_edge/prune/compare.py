"""Methods x budgets: masked accuracy on the selection and evaluation splits (`cahp-edge compare`).

Every method is also compared with the first one listed (the reference, CAHP by default) on the same
evaluation examples: examples only the reference gets right, examples only the other method gets
right, and the exact two-sided McNemar p-value (binomial test on those discordant pairs). On a few
hundred examples, accuracy gaps of a point or two are often noise; the p-value says so.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.prune.batches import Batches
from cahp_edge.prune.paired import mcnemar
from cahp_edge.prune.provenance import versions
from cahp_edge.prune.salience import accuracy_of, masked_eval, masked_outcomes
from cahp_edge.prune.select import PruneOptions, make_selector
from cahp_edge.prune.sweep import HeadIndex, SelectionData

FIELDS = (
    "method",
    "heads",
    "keep_ratio",
    "select_accuracy",
    "eval_accuracy",
    "eval_loss",
    "heads_per_layer",
    "selection_s",
    "vs_reference",
    "only_reference",
    "only_this",
    "mcnemar_p",
)
# heads + neurons comparisons (--speedups): the budget is a speedup, a plan keeps heads and neurons
UNIT_FIELDS = ("method", "speedup", "speedup_ideal", "heads", "neurons", "select_accuracy", "eval_accuracy",
               "eval_loss", "heads_per_layer", "neurons_per_layer", "selection_s", "vs_reference",
               "only_reference", "only_this", "mcnemar_p")


def _dense(model: nn.Module, adapter: Adapter, data: SelectionData, eval_batches: Batches) -> dict:
    """The unpruned model's row of a comparison: heads, selection and evaluation accuracy, eval loss."""
    eval_acc, eval_loss = masked_eval(model, adapter, eval_batches)
    return {"heads": sum(adapter.heads_per_layer(model)),
            "select_accuracy": masked_eval(model, adapter, data.select)[0],
            "eval_accuracy": eval_acc, "eval_loss": eval_loss}


def _result(dense: dict, budgets: list, methods: list[str], rows: list[dict], base: PruneOptions) -> dict:
    """What both comparisons return (and compare.json records)."""
    return {"dense": dense, "budgets": budgets, "methods": methods, "rows": rows, "seed": base.seed,
            "options": base.model_dump(mode="json", exclude={"method"}), "versions": versions()}


def run_compare(
    model: nn.Module,
    adapter: Adapter,
    data: SelectionData,
    eval_batches: Batches,
    methods: list[str],
    budgets: list[int],
    options: PruneOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    base = options or PruneOptions()
    index = HeadIndex(adapter.heads_per_layer(model))
    dense = _dense(model, adapter, data, eval_batches)
    rows = []
    correct: dict[tuple[str, int], torch.Tensor] = {}  # (method, heads) -> (N,) bool on the eval split
    for method in methods:
        t0 = time.perf_counter()
        # every method with the same seed and options (CAHP's own options apply to CAHP only)
        sel = make_selector(model, adapter, data, PruneOptions(**{**base.model_dump(), "method": method,
                                                                   "units": "heads"}))
        masks = sel.masks(sorted(budgets, reverse=True))
        t_sel = time.perf_counter() - t0
        for k in sorted(masks, reverse=True):
            m = masks[k]
            acc_sel = masked_eval(model, adapter, data.select, m)[0]
            correct[(method, k)], loss_ev = masked_outcomes(model, adapter, eval_batches, m)
            acc_ev = accuracy_of(correct[(method, k)])
            per_layer = [int(v) for v in m.sum(1).tolist()]
            rows.append(
                {
                    "method": method,
                    "heads": k,
                    "keep_ratio": k / index.n,
                    "select_accuracy": acc_sel,
                    "eval_accuracy": acc_ev,
                    "eval_loss": loss_ev,
                    "heads_per_layer": per_layer,
                    "selection_s": t_sel,
                    "kept": [[h for h in range(len(r)) if r[h] > 0.5] for r in m.tolist()],
                }
            )
            ref = (methods[0], k)
            if method != methods[0] and ref in correct:
                rows[-1].update({"vs_reference": methods[0], **mcnemar(correct[ref], correct[(method, k)])})
        if progress:
            best = ", ".join(
                f"{r['heads']}:{100 * r['eval_accuracy']:.1f}" for r in rows if r["method"] == method
            )
            progress(f"compare: {method} done in {t_sel:.0f}s ({best})")
    return _result(dense, budgets, methods, rows, base)


def table_text(res: dict) -> str:
    joint = res.get("units") == "heads+neurons"
    x = "speedup" if joint else "heads"
    budgets = sorted(res["budgets"], reverse=not joint)
    by = {(r["method"], r[x]): r for r in res["rows"]}
    head = f"{'method':<10}" + "".join(f"{(f'{k:g}x' if joint else k):>9}" for k in budgets)
    what = ("by ideal speedup (MACs), heads + FFN neurons, after the least-squares re-fit" if joint
            else "by heads kept")
    lines = [
        f"eval accuracy (%) {what}; dense {100 * res['dense']['eval_accuracy']:.1f}% "
        f"with {res['dense']['heads']} heads",
        head,
    ]
    for m in res["methods"]:
        lines.append(
            f"{m:<10}"
            + "".join(
                f"{100 * by[(m, k)]['eval_accuracy']:>9.1f}" if (m, k) in by else f"{'-':>9}" for k in budgets
            )
        )
    paired = [r for r in res["rows"] if r.get("vs_reference")]
    if paired:
        ref = paired[0]["vs_reference"]
        lines += ["", f"paired with {ref} on the same eval examples: exact McNemar p "
                  f"(examples only {ref} gets right / only the method gets right)"]
        for m in [m for m in res["methods"] if m != ref]:
            cells = []
            for k in budgets:
                r = by.get((m, k))
                cells.append(
                    f"{r['mcnemar_p']:.2f} ({r['only_reference']}/{r['only_this']})".rjust(16)
                    if r and r.get("vs_reference") else f"{'-':>16}"
                )
            lines.append(f"{m:<10}" + "".join(cells))
    return "\n".join(lines)


def run_compare_units(
    model: nn.Module,
    adapter: Adapter,
    data: SelectionData,
    eval_batches: Batches,
    methods: list[str],
    speedups: list[float],
    options: PruneOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Heads + FFN neurons: every method at every MAC speedup, each plan cut out and re-fit by least squares
    on the calibration rows (the default CPU recovery), scored on the evaluation split and paired with the
    first method (exact McNemar), as :func:`run_compare` does for heads."""
    from cahp_edge.model.reconstruct import reconstruct
    from cahp_edge.model.reshape import reshape
    from cahp_edge.prune.units import select_units

    base = options or PruneOptions()
    n_heads = sum(adapter.heads_per_layer(model))
    dense = _dense(model, adapter, data, eval_batches)
    rows, correct = [], {}
    for method in methods:
        t0 = time.perf_counter()
        for s in sorted(speedups):
            opts = PruneOptions(**{**base.model_dump(), "method": method, "units": "heads+neurons",
                                   "speedup": s, "rivals": "none", "heads": None, "keep_ratio": None})
            t1 = time.perf_counter()
            plan = select_units(model, adapter, data, opts)
            pruned = reshape(model, plan, adapter)
            reconstruct(pruned, model, adapter, list(data.calib))
            correct[(method, s)], loss_ev = masked_outcomes(pruned, adapter, eval_batches)
            rows.append({"method": method, "speedup": s, "speedup_ideal": plan.meta["speedup_ideal"],
                         "heads": plan.total_kept, "neurons": sum(plan.neurons_per_layer),
                         "keep_ratio": plan.total_kept / n_heads,
                         "select_accuracy": plan.meta["curve"][0]["accuracy"],
                         "eval_accuracy": accuracy_of(correct[(method, s)]), "eval_loss": loss_ev,
                         "heads_per_layer": plan.heads_per_layer, "neurons_per_layer": plan.neurons_per_layer,
                         "selection_s": time.perf_counter() - t1})
            if method != methods[0] and (methods[0], s) in correct:
                rows[-1].update({"vs_reference": methods[0], **mcnemar(correct[(methods[0], s)],
                                                                       correct[(method, s)])})
        if progress:
            best = ", ".join(f"{r['speedup']:g}x:{100 * r['eval_accuracy']:.1f}" for r in rows
                             if r["method"] == method)
            progress(f"compare: {method} done in {time.perf_counter() - t0:.0f}s ({best})")
    return {"units": "heads+neurons", **_result(dense, sorted(speedups), methods, rows, base)}


def write_compare(out: Path, res: dict) -> None:
    from cahp_edge import plots
    from cahp_edge.fsutil import atomic_write_text

    joint = res.get("units") == "heads+neurons"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=UNIT_FIELDS if joint else FIELDS, extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    for r in res["rows"]:
        w.writerow({**r, **{k: " ".join(map(str, r[k])) for k in ("heads_per_layer", "neurons_per_layer")
                            if k in r}})
    atomic_write_text(out / "compare.csv", buf.getvalue())
    atomic_write_text(out / "compare.json", json.dumps(res, indent=2, default=str) + "\n")
    x = "speedup" if joint else "heads"
    plots.save(plots.compare_figure(res["rows"], res["dense"]["eval_accuracy"], x=x), out / "compare.png")
