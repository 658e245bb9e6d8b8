"""`cahp-edge prune` (choose heads, write plan.json + plots) and `cahp-edge compare` (methods x budgets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cahp_edge.cli.app import Json, Quiet, TrustPickle, app, emit, note
from cahp_edge.cli.options import stage_options
from cahp_edge.data.options import DataOptions
from cahp_edge.prune.options import JOINT_METHODS, METHODS, CahpOptions, PruneOptions


def _load(model: str, data: str, data_opts: DataOptions, trust_pickle: bool):
    from cahp_edge.errors import UsageError
    from cahp_edge.model.load import load_model

    lm = load_model(model, trust_pickle=trust_pickle, require_classifier=True,
                    task=None if data_opts.task == "auto" else data_opts.task)
    if lm.task != "sequence-classification":
        raise UsageError(f"`cahp-edge prune` selects units for classifiers; {lm.path} is a {lm.task} model",
                         "its label-free selection, re-fit and metric run inside the build",
                         f"use `cahp-edge build --model {lm.path} --data ... --eval ...` (it prunes from "
                         "unlabelled text)")
    if lm.pruned:
        raise UsageError(
            f"{lm.path} is already pruned",
            "heads are selected on the dense model",
            "pass the dense fine-tuned checkpoint to --model",
        )
    return lm, _for_model(data, lm, data_opts)


def _for_model(spec: str, lm, o: DataOptions, unlabelled_ok: bool = False):
    """A dataset checked against the model's task (single/pair) with labels aligned to its ids;
    with ``unlabelled_ok``, rows without labels are labelled with the model's predictions."""
    from cahp_edge.data import align_labels, check_task, load_dataset
    from cahp_edge.model.evaluate import pseudo_label

    ds = load_dataset(spec, **o.columns(), labels=not unlabelled_ok)
    check_task(ds, lm.model.config)
    if not ds.labelled:
        return pseudo_label(lm.model, lm.tokenizer, ds, o.max_length, o.batch_size)
    return align_labels(ds, lm.model.config.id2label)


def _selection_data(lm, ds, o: DataOptions, select: str | None = None):
    """Calibration + selection batches; selection rows from ``select`` (held-out data) when given."""
    import torch

    from cahp_edge.data import make_splits
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.sweep import SelectionData

    torch.set_num_threads(max(1, torch.get_num_threads()))
    held = _for_model(select, lm, o, unlabelled_ok=True) if select is not None else None
    sp = make_splits(ds, ds, calib_size=o.calib_size, select_size=o.select_size, seed=o.seed,
                     select_ds=held)  # eval unused here
    sources = {k: v for k, v in sp.sources.items() if k != "eval"}
    data = SelectionData(
        from_dataset(lm.tokenizer, sp.calib, o.max_length, o.batch_size),
        from_dataset(lm.tokenizer, sp.select, o.max_length, o.batch_size),
    )
    return data, sources


@app.command()
@stage_options(data_opts=DataOptions, opts=PruneOptions)
def prune(
    model: Annotated[str, typer.Option(help="Dense fine-tuned classifier folder (or hub id).")],
    data: Annotated[
        str, typer.Option(help="Training data file/folder: calibration + selection splits come from it.")
    ],
    out: Annotated[Path, typer.Option(help="Plan folder to write (plan.json + PNGs).")],
    data_opts: DataOptions,
    opts: PruneOptions,
    select: Annotated[
        str | None,
        typer.Option(help="Knee-selection data (default: rows of --data), not what the model was tuned on; "
                          "without labels, the dense model's predictions label it."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    as_json: Json = False,
    quiet: Quiet = False,
    trust_pickle: TrustPickle = False,
) -> None:
    """Choose which attention heads to keep (CAHP or a baseline) and write a head plan."""
    from cahp_edge.cli.progress import Progress
    from cahp_edge.fsutil import atomic_dir, check_output_dir
    from cahp_edge.prune.artifact import write_plan_dir
    from cahp_edge.prune.select import check_budget, check_options, select_heads

    check_output_dir(out, overwrite, inputs=[model, data, select])
    lm, ds = _load(model, data, data_opts, trust_pickle)
    check_options(opts, sum(lm.heads_per_layer))
    sel, sources = _selection_data(lm, ds, data_opts, select)
    check_budget(lm.model, lm.adapter, sel, opts)
    note(
        f"prune: {opts.method} on {sum(lm.heads_per_layer)} heads; calib {sel.calib.num_examples}, "
        f"select {sel.select.num_examples} examples",
        quiet,
    )
    shown = Progress(quiet)
    try:
        plan = select_heads(lm.model, lm.adapter, sel, opts, sources,
                            progress=lambda task, done, total: shown.update(f"prune: {task}", done, total))
    finally:
        shown.stop()
    plan.meta["model"] = {"path": str(lm.path), "source_hash": lm.source_hash}
    dist = plan.meta.pop("_distance", None)
    with atomic_dir(out, overwrite) as tmp:
        files = write_plan_dir(tmp, plan, dist)
    m = plan.meta
    d = {
        "out": str(out),
        "files": files,
        "method": opts.method,
        "heads_kept": plan.total_kept,
        "heads_total": plan.total_heads,
        "heads_per_layer": plan.heads_per_layer,
        "k_star": m["k_star"],
        "budget_source": m["budget_source"],
        "selection_accuracy_dense": m["selection_accuracy_dense"],
        "timings": m["timings"],
    }
    from cahp_edge import plots

    cost = plots.drop_text(plots.kept_drop({**m, "total_kept": plan.total_kept}))
    guard = plots.guard_text(m.get("knee"))
    guard = f" ({guard})" if guard else ""
    rival = plots.better_rival(m)
    d["rivals"] = m.get("rivals", [])
    ffn = ""
    if plan.prunes_neurons:
        d.update({"neurons_kept": sum(plan.neurons_per_layer), "neurons_total": sum(plan.num_neurons),
                  "neurons_per_layer": plan.neurons_per_layer, "speedup_ideal": m["speedup_ideal"],
                  "cost_model": m["cost_model"]})
        ffn = (f" and {d['neurons_kept']}/{d['neurons_total']} FFN neurons {plan.neurons_per_layer}; ideal "
               f"speedup {m['speedup_ideal']:.2f}x ({m['cost_model']['source']})")
    human = (
        f"{opts.method}: keep {plan.total_kept}/{plan.total_heads} heads ({m['budget_source']}){guard}, "
        f"per layer {plan.heads_per_layer}{ffn}"
        + (f"\n{cost}" if cost else f"\nselection accuracy: dense {100 * m['selection_accuracy_dense']:.1f}%")
        + (f"\nnote: {rival}" if rival else "")
        + f"\nselection time {m['timings']['selection_s']:.1f}s, total {m['timings']['total_s']:.1f}s"
        + f"\nwrote {out}/ ({', '.join(files)})"
    )
    emit(d, as_json, human)


def parse_speedups(text: str) -> list[float]:
    from cahp_edge.errors import UsageError

    out = []
    for part in [p.strip().removesuffix("x") for p in text.split(",") if p.strip()]:
        try:
            v = float(part)
        except ValueError:
            raise UsageError(f"speedup {part!r} is not a number", "speedups are factors like 2 or 2.5",
                             "pass e.g. --speedups 1.5,2,3") from None
        if not v >= 1.0:
            raise UsageError(f"speedup {part} is below 1", "a speedup is dense cost / kept cost",
                             "pass factors of 1 or more, e.g. --speedups 1.5,2,3")
        out.append(v)
    if not out:
        raise UsageError("no speedups given", "", "pass e.g. --speedups 1.5,2,3")
    return sorted(set(out))


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
@stage_options(data_opts=DataOptions, cahp=CahpOptions)
def compare(
    model: Annotated[str, typer.Option(help="Dense fine-tuned classifier folder.")],
    data: Annotated[str, typer.Option(help="Training data (calibration + selection).")],
    eval: Annotated[
        str, typer.Option("--eval", help="Evaluation data (reported accuracy; never used to select).")
    ],
    out: Annotated[Path, typer.Option(help="Output folder (compare.csv, compare.json, compare.png).")],
    data_opts: DataOptions,
    cahp: CahpOptions,
    budgets: Annotated[
        str, typer.Option(help="Head counts or percentages, comma-separated.")
    ] = "50%,33%,25%,12.5%",
    methods: Annotated[
        str | None, typer.Option(help=f"Comma-separated methods, the first is the reference "
                                      f"({'|'.join(METHODS)}; default: all, or {','.join(JOINT_METHODS)} "
                                      "with --speedups).")
    ] = None,
    speedups: Annotated[
        str | None, typer.Option(help="Compare heads + FFN neurons plans at these MAC speedups instead "
                                      "of head counts (e.g. 1.5,2,3,4,5), each re-fit by least squares.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    as_json: Json = False,
    quiet: Quiet = False,
    trust_pickle: TrustPickle = False,
) -> None:
    """Run several selection methods at the same budgets; table (CSV + terminal) and plot."""
    from cahp_edge.errors import UsageError
    from cahp_edge.fsutil import atomic_dir, check_output_dir
    from cahp_edge.prune.compare import run_compare, run_compare_units, table_text, write_compare

    allowed = JOINT_METHODS if speedups else tuple(METHODS)
    meths = [m.strip() for m in (methods or ",".join(allowed)).split(",") if m.strip()]
    bad = [m for m in meths if m not in allowed]
    if bad or not meths:
        raise UsageError(f"unknown method(s) {bad or methods!r}" + (" for --speedups" if speedups else ""),
                         f"choose from {', '.join(allowed)}", "")
    factors = parse_speedups(speedups) if speedups else None
    check_output_dir(out, overwrite, inputs=[model, data, eval])
    lm, ds = _load(model, data, data_opts, trust_pickle)
    ks = None if factors else parse_budgets(budgets, sum(lm.heads_per_layer))
    from cahp_edge.prune.batches import from_dataset

    ev = _for_model(eval, lm, data_opts)
    sel, sources = _selection_data(lm, ds, data_opts)
    sources["eval"] = f"all {len(ev)} rows of {ev.source}"
    eval_batches = from_dataset(lm.tokenizer, ev, data_opts.max_length, data_opts.batch_size)
    base = PruneOptions(seed=data_opts.seed, **cahp.model_dump())
    run = run_compare_units if factors else run_compare
    res = run(lm.model, lm.adapter, sel, eval_batches, meths, factors or ks, base,
              progress=lambda s: note(s, quiet))
    res["data"] = sources
    with atomic_dir(out, overwrite) as tmp:
        write_compare(tmp, res)
    emit(res, as_json, table_text(res) + f"\nwrote {out}/ (compare.csv, compare.json, compare.png)")
