"""`cahp-edge prune` (choose heads, write plan.json + plots) and `cahp-edge compare` (methods x budgets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cahp_edge.cli.app import app, emit, note

_METHODS = "cahp|michel|oneshot|magnitude|random|uniform"

# CAHP defaults, equal to cahp_edge.prune.PruneOptions' (tested); not imported here: that pulls in torch
_SALIENCE, _SALIENCE_LABELS, _ROUND_FRACTION, _LOSS_BELOW = "abs", "predicted", 0.5, 0.0


def _load(model: str, data: str, text_column, text_pair_column, label_column, trust_pickle: bool):
    from cahp_edge.data import align_labels, check_task, load_dataset
    from cahp_edge.model.load import load_model

    lm = load_model(model, trust_pickle=trust_pickle, require_classifier=True)
    if lm.pruned:
        from cahp_edge.errors import UsageError

        raise UsageError(
            f"{lm.path} is already pruned",
            "heads are selected on the dense model",
            "pass the dense fine-tuned checkpoint to --model",
        )
    ds = load_dataset(
        data, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column
    )
    check_task(ds, lm.model.config)
    ds = align_labels(ds, lm.model.config.id2label)
    return lm, ds


def _selection_data(lm, ds, calib_size: int, select_size: int, seed: int, max_length: int, batch_size: int):
    import torch

    from cahp_edge.data import make_splits
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.sweep import SelectionData

    torch.set_num_threads(max(1, torch.get_num_threads()))
    sp = make_splits(ds, ds, calib_size=calib_size, select_size=select_size, seed=seed)  # eval unused here
    sources = {k: v for k, v in sp.sources.items() if k != "eval"}
    data = SelectionData(
        from_dataset(lm.tokenizer, sp.calib, max_length, batch_size),
        from_dataset(lm.tokenizer, sp.select, max_length, batch_size),
    )
    return data, sources


@app.command()
def prune(
    model: Annotated[str, typer.Option(help="Dense fine-tuned classifier folder (or hub id).")],
    data: Annotated[
        str, typer.Option(help="Training data file/folder: calibration + selection splits come from it.")
    ],
    out: Annotated[Path, typer.Option(help="Plan folder to write (plan.json + PNGs).")],
    method: Annotated[str, typer.Option(help=f"Selection method: {_METHODS}.")] = "cahp",
    clustering: Annotated[
        str, typer.Option(help="CAHP graph clustering: spectral|agglomerative.")
    ] = "spectral",
    schedule: Annotated[
        str, typer.Option(help="CAHP schedule: iterative (re-scored rounds) | oneshot.")
    ] = "iterative",
    salience_weight: Annotated[
        float, typer.Option(min=0.0, help="CAHP: gamma of the salience-aware graph (0 = plain JSD graph).")
    ] = 1.0,
    salience: Annotated[
        str, typer.Option(help="CAHP salience: abs (E|dL/dm|) | fisher (E (dL_x/dm)^2).")
    ] = _SALIENCE,
    salience_labels: Annotated[
        str, typer.Option(help="CAHP salience loss against: predicted (dense model's labels) | gold.")
    ] = _SALIENCE_LABELS,
    round_fraction: Annotated[
        float, typer.Option(help="CAHP: share of calibration data per salience round after the first.")
    ] = _ROUND_FRACTION,
    loss_below: Annotated[
        float,
        typer.Option(help="CAHP: at <= this fraction of heads, representatives by measured loss (0 = off)."),
    ] = _LOSS_BELOW,
    calib_size: Annotated[int, typer.Option(help="Calibration examples (signatures, salience).")] = 512,
    select_size: Annotated[
        int, typer.Option(help="Selection examples (accuracy sweep for the knee).")
    ] = 1000,
    degree: Annotated[int, typer.Option(help="Polynomial degree of the curve fit (1..10).")] = 3,
    max_drop: Annotated[
        float | None, typer.Option(help="Max selection-accuracy drop (points) at the knee.")
    ] = None,
    heads: Annotated[int | None, typer.Option(help="Keep exactly N heads (skips the knee).")] = None,
    keep_ratio: Annotated[
        float | None, typer.Option(help="Keep this fraction of heads (skips the knee).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits and clustering.")] = 0,
    max_length: Annotated[int, typer.Option(min=8, help="Max tokens per example.")] = 128,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size for calibration and evaluation.")] = 32,
    text_column: Annotated[str | None, typer.Option(help="Text column (csv/tsv/jsonl/parquet).")] = None,
    text_pair_column: Annotated[str | None, typer.Option(help="Second text column (pair tasks).")] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle")] = False,
) -> None:
    """Choose which attention heads to keep (CAHP or a baseline) and write a head plan."""
    from cahp_edge.fsutil import atomic_dir, check_output_dir
    from cahp_edge.prune.artifact import write_plan_dir
    from cahp_edge.prune.knee import check_degree
    from cahp_edge.prune.select import PruneOptions, check_options, select_heads

    opts = PruneOptions(
        method=method,
        clustering=clustering,
        schedule=schedule,
        salience_weight=salience_weight,
        salience_kind=salience,
        salience_labels=salience_labels,
        round_fraction=round_fraction,
        loss_below=loss_below,
        degree=degree,
        max_drop=max_drop,
        heads=heads,
        keep_ratio=keep_ratio,
        seed=seed,
    )
    check_degree(degree)
    _check_schedule(schedule)
    check_output_dir(out, overwrite)
    lm, ds = _load(model, data, text_column, text_pair_column, label_column, trust_pickle)
    check_options(opts, sum(lm.heads_per_layer))
    sel, sources = _selection_data(lm, ds, calib_size, select_size, seed, max_length, batch_size)
    note(
        f"prune: {method} on {sum(lm.heads_per_layer)} heads; calib {sel.calib.num_examples}, "
        f"select {sel.select.num_examples} examples",
        quiet,
    )
    plan = select_heads(lm.model, lm.adapter, sel, opts, sources)
    plan.meta["model"] = {"path": str(lm.path), "source_hash": lm.source_hash}
    dist = plan.meta.pop("_distance", None)
    with atomic_dir(out, overwrite) as tmp:
        files = write_plan_dir(tmp, plan, dist)
    m = plan.meta
    d = {
        "out": str(out),
        "files": files,
        "method": method,
        "heads_kept": plan.total_kept,
        "heads_total": plan.total_heads,
        "heads_per_layer": plan.heads_per_layer,
        "k_star": m["k_star"],
        "budget_source": m["budget_source"],
        "selection_accuracy_dense": m["selection_accuracy_dense"],
        "timings": m["timings"],
    }
    at_k = next((p for p in m.get("curve", []) if p["heads"] == m["k_star"]), None)
    human = (
        f"{method}: keep {plan.total_kept}/{plan.total_heads} heads ({m['budget_source']}), per layer "
        f"{plan.heads_per_layer}\nselection accuracy: dense {100 * m['selection_accuracy_dense']:.1f}%"
        + (f", kept {100 * at_k['accuracy']:.1f}%" if at_k else "")
        + f"\nselection time {m['timings']['selection_s']:.1f}s, total {m['timings']['total_s']:.1f}s"
        + f"\nwrote {out}/ ({', '.join(files)})"
    )
    emit(d, as_json, human)


def _check_schedule(schedule: str) -> None:
    from cahp_edge.errors import UsageError

    if schedule not in ("iterative", "oneshot"):
        raise UsageError(f"unknown schedule {schedule!r}", "choose iterative or oneshot", "")


def parse_budgets(text: str, n_total: int) -> list[int]:
    from cahp_edge.errors import UsageError

    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        try:
            v = float(part[:-1]) / 100 * n_total if part.endswith("%") else int(part)
        except ValueError:
            raise UsageError(
                f"budget {part!r} is not a number",
                "budgets are head counts or percentages",
                "pass e.g. --budgets 36,24,18,9 or 50%,25%",
            ) from None
        k = round(v)
        if k < 1 or k > n_total:
            raise UsageError(
                f"budget {part} is outside the model's head count",
                f"the model has {n_total} heads",
                f"pass budgets between 1 and {n_total}",
            )
        out.append(k)
    if not out:
        raise UsageError("no budgets given", "", "pass e.g. --budgets 36,24,18,9")
    return sorted(set(out), reverse=True)


@app.command()
def compare(
    model: Annotated[str, typer.Option(help="Dense fine-tuned classifier folder.")],
    data: Annotated[str, typer.Option(help="Training data (calibration + selection).")],
    eval: Annotated[
        str, typer.Option("--eval", help="Evaluation data (reported accuracy; never used to select).")
    ],
    out: Annotated[Path, typer.Option(help="Output folder (compare.csv, compare.json, compare.png).")],
    budgets: Annotated[
        str, typer.Option(help="Head counts or percentages, comma-separated.")
    ] = "50%,33%,25%,12.5%",
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods.")
    ] = "cahp,michel,oneshot,magnitude,random,uniform",
    clustering: Annotated[str, typer.Option(help="CAHP clustering: spectral|agglomerative.")] = "spectral",
    calib_size: Annotated[int, typer.Option(help="Calibration examples.")] = 512,
    select_size: Annotated[int, typer.Option(help="Selection examples.")] = 1000,
    seed: Annotated[int, typer.Option()] = 0,
    max_length: Annotated[int, typer.Option(min=8)] = 128,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    text_column: Annotated[str | None, typer.Option()] = None,
    text_pair_column: Annotated[str | None, typer.Option()] = None,
    label_column: Annotated[str | None, typer.Option()] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle")] = False,
) -> None:
    """Run several selection methods at the same budgets; table (CSV + terminal) and plot."""
    from cahp_edge.fsutil import atomic_dir, check_output_dir
    from cahp_edge.prune.compare import run_compare, table_text, write_compare

    check_output_dir(out, overwrite)
    meths = [m.strip() for m in methods.split(",") if m.strip()]
    from cahp_edge.prune.select import METHODS

    bad = [m for m in meths if m not in METHODS]
    if bad or not meths:
        from cahp_edge.errors import UsageError

        raise UsageError(f"unknown method(s) {bad or methods!r}", f"choose from {', '.join(METHODS)}", "")
    lm, ds = _load(model, data, text_column, text_pair_column, label_column, trust_pickle)
    ks = parse_budgets(budgets, sum(lm.heads_per_layer))
    from cahp_edge.data import align_labels, check_task, load_dataset
    from cahp_edge.prune.batches import from_dataset

    ev = load_dataset(
        eval, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column
    )
    check_task(ev, lm.model.config)
    ev = align_labels(ev, lm.model.config.id2label)
    sel, sources = _selection_data(lm, ds, calib_size, select_size, seed, max_length, batch_size)
    sources["eval"] = f"all {len(ev)} rows of {ev.source}"
    eval_batches = from_dataset(lm.tokenizer, ev, max_length, batch_size)
    res = run_compare(
        lm.model,
        lm.adapter,
        sel,
        eval_batches,
        meths,
        ks,
        seed,
        clustering,
        progress=lambda s: note(s, quiet),
    )
    res["data"] = sources
    with atomic_dir(out, overwrite) as tmp:
        write_compare(tmp, res)
    emit(res, as_json, table_text(res) + f"\nwrote {out}/ (compare.csv, compare.json, compare.png)")
