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
    dense_sel = masked_eval(model, adapter, data.select)[0]
    dense_eval, dense_loss = masked_eval(model, adapter, eval_batches)
    rows = []
    correct: dict[tuple[str, int], torch.Tensor] = {}  # (method, heads) -> (N,) bool on the eval split
    for method in methods:
        t0 = time.perf_counter()
        # every method with the same seed and options (CAHP's own options apply to CAHP only)
        sel = make_selector(model, adapter, data, PruneOptions(**{**base.model_dump(), "method": method}))
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
    return {
        "dense": {
            "heads": index.n,
            "select_accuracy": dense_sel,
            "eval_accuracy": dense_eval,
            "eval_loss": dense_loss,
        },
        "budgets": budgets,
        "methods": methods,
        "rows": rows,
        "seed": base.seed,
        "options": base.model_dump(mode="json", exclude={"method"}),
        "versions": versions(),
    }


def table_text(res: dict) -> str:
    budgets = sorted(res["budgets"], reverse=True)
    by = {(r["method"], r["heads"]): r for r in res["rows"]}
    head = f"{'method':<10}" + "".join(f"{k:>9}" for k in budgets)
    lines = [
        f"eval accuracy (%) by heads kept; dense {100 * res['dense']['eval_accuracy']:.1f}% "
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


def write_compare(out: Path, res: dict) -> None:
    from cahp_edge import plots
    from cahp_edge.fsutil import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in res["rows"]:
        w.writerow({**r, "heads_per_layer": " ".join(map(str, r["heads_per_layer"]))})
    atomic_write_text(out / "compare.csv", buf.getvalue())
    atomic_write_text(out / "compare.json", json.dumps(res, indent=2, default=str) + "\n")
    plots.save(plots.compare_figure(res["rows"], res["dense"]["eval_accuracy"]), out / "compare.png")
