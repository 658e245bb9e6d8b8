"""`cahp-edge targets list`, `cahp-edge targets show NAME` and `cahp-edge validate MODEL --target NAME`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cahp_edge.cli.app import Json, Quiet, app, emit, note

targets_app = typer.Typer(help="List and show target profiles (targets/*.toml).", no_args_is_help=True)
app.add_typer(targets_app, name="targets")


@targets_app.command("list")
def targets_list(
    as_json: Json = False,
) -> None:
    """Shipped target profiles, one line each."""
    from cahp_edge.targets.profile import list_targets, load_target

    rows = [load_target(n) for n in list_targets()]
    d = [{"name": t.name, "arch": t.arch, "cpu": t.cpu, "quantization": t.quantization.mode,
          "execution_providers": t.execution_providers, "description": t.description} for t in rows]
    w = max((len(t.name) for t in rows), default=4)
    lines = [f"{t.name:<{w}}  {t.arch:<7}  {t.quantization.mode:<7}  {t.description}" for t in rows]
    emit(d, as_json, "\n".join(lines))


@targets_app.command("show")
def targets_show(
    name: Annotated[str, typer.Argument(help="Shipped name (see `targets list`) or a path to a .toml.")],
    as_json: Json = False,
) -> None:
    """Every setting of one profile (for `host`, as detected on this machine)."""
    from cahp_edge.targets.profile import load_target

    t = load_target(name)
    q, b, g = t.quantization, t.benchmark, t.budgets
    lines = [
        f"{t.name}: {t.description}",
        f"  arch {t.arch}, cpu {t.cpu}, features {', '.join(t.isa_features) or '-'}",
        f"  providers {', '.join(t.execution_providers)}; threads {t.threads or 'ORT default'}; "
        f"opset {t.opset}; optimize {t.optimize}; formats {', '.join(t.formats)}",
        f"  quantization {q.mode} {q.format}, per_channel {q.per_channel}, reduce_range {q.reduce_range}, "
        f"activations {q.activation_type}, weights {q.weight_type}, ops {', '.join(q.op_types)}",
        f"    why: {q.why}",
        f"  benchmark batch {b.batch}, seq_len {b.seq_len}, warmup {b.warmup}, runs {b.runs}",
        f"  budgets accuracy drop <= {g.max_accuracy_drop}, p90 <= {g.p90_latency_ms} ms, "
        f"size <= {g.max_size_mb} MB, peak memory <= {g.max_peak_memory_mb} MB",
        f"  source {t.source}",
    ]
    emit(t.summary(), as_json, "\n".join(lines))


@app.command("validate")
def validate_cmd(
    model: Annotated[Path, typer.Argument(help="Package/export folder, or a .onnx/.ort file inside one.")],
    target: Annotated[str, typer.Option(help="Target profile name or path to a .toml.")] = "host",
    data: Annotated[Path | None, typer.Option(help="Evaluation data (txt/tsv/csv/jsonl/parquet).")] = None,
    device: Annotated[str, typer.Option(help="local, ssh://user@host[:port] or adb://SERIAL.")] = "local",
    reference: Annotated[Path | None, typer.Option(help="fp32 model whose accuracy is the baseline.")] = None,
    baseline_accuracy: Annotated[float | None, typer.Option(help="Baseline accuracy (0..1) instead of "
                                                                 "--reference.")] = None,
    runs: Annotated[int | None, typer.Option(min=1, help="Timed runs (default: the target's).")] = None,
    warmup: Annotated[int | None, typer.Option(min=0, help="Warm-up runs (default: the target's).")] = None,
    seq_len: Annotated[int | None, typer.Option(min=1, help="Benchmark/truncation length.")] = None,
    batch: Annotated[int | None, typer.Option(min=1, help="Benchmark batch (default: the target's).")] = None,
    threads: Annotated[int | None, typer.Option(min=0, help="Threads (default: the target's).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N examples.")] = None,
    emulate: Annotated[bool, typer.Option(help="aarch64 targets: also measure accuracy with the ARM "
                                                "kernels under QEMU (needs CAHP_ARM64_ROOT).")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds before a run is abandoned.")] = 900.0,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Measure accuracy, latency, memory and size with a target's settings and check its budgets.

    Exit 0 when no budget failed (skipped checks are listed), 1 when one failed.
    """
    from cahp_edge.targets.validate import validate

    note(f"validate: {model} for target {target} on {device}", quiet)
    rep = validate(model, target, data=data, device=device, reference=reference,
                   baseline_accuracy=baseline_accuracy, runs=runs, warmup=warmup, seq_len=seq_len,
                   batch=batch, threads=threads, limit=limit, emulate=emulate, timeout=timeout)
    emit(json.loads(json.dumps(rep.to_dict(), default=str)), as_json, rep.table())
    if rep.status == "fail":
        from cahp_edge.errors import ValidateError

        failed = [f"{c.name} {c.measured:.4g} > {c.limit:.4g}" for c in rep.checks if c.status == "fail"]
        raise ValidateError(f"{rep.model} misses target {rep.target}'s budgets", ", ".join(failed),
                            "see the table above: shrink or quantize the model, or relax the budgets")
