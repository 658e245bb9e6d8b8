"""Methods x budgets: masked accuracy on the selection and evaluation splits (`cahp-edge compare`)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.prune import PruneOptions, make_selector, versions
from cahp_edge.prune.batches import Batches
from cahp_edge.prune.salience import masked_eval
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
)


def run_compare(
    model: nn.Module,
    adapter: Adapter,
    data: SelectionData,
    eval_batches: Batches,
    methods: list[str],
    budgets: list[int],
    seed: int = 0,
    clustering: str = "spectral",
    progress: Callable[[str], None] | None = None,
) -> dict:
    index = HeadIndex(adapter.heads_per_layer(model))
    dense_sel = masked_eval(model, adapter, data.select)[0]
    dense_eval, dense_loss = masked_eval(model, adapter, eval_batches)
    rows = []
    for method in methods:
        t0 = time.perf_counter()
        sel = make_selector(
            model, adapter, data, PruneOptions(method=method, clustering=clustering, seed=seed)
        )
        masks = sel.masks(sorted(budgets, reverse=True))
        t_sel = time.perf_counter() - t0
        for k in sorted(masks, reverse=True):
            m = masks[k]
            acc_sel = masked_eval(model, adapter, data.select, m)[0]
            acc_ev, loss_ev = masked_eval(model, adapter, eval_batches, m)
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
        "seed": seed,
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
    plots.compare(out / "compare.png", res["rows"], res["dense"]["eval_accuracy"])
