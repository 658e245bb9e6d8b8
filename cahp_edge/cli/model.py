"""`cahp-edge inspect` and `cahp-edge reshape`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cahp_edge.cli.app import Json, TrustPickle, app, emit, note


@app.command()
def inspect(
    model: Annotated[str, typer.Argument(
        help="Checkpoint folder (dense or cahp-pruned), hub id, release folder (dist/<target>) "
             "or .onnx file.")],
    seq_len: Annotated[int, typer.Option(min=1, help="Sequence length for the MAC count.")] = 128,
    as_json: Json = False,
    trust_pickle: TrustPickle = False,
) -> None:
    """Heads per layer, parameters and MACs (FLOPs/2) at a sequence length; for ONNX, what it stores."""
    from cahp_edge.release.inspect import inspect_path

    d = inspect_path(model, seq_len, trust_pickle)
    emit(d, as_json, "\n".join(_inspect_lines(d, seq_len)))


def _inspect_lines(d: dict, seq_len: int) -> list[str]:
    lines = []
    if "layers" in d:
        kind = {"checkpoint": "", "release": ", release", "onnx": ", ONNX in a release"}[d["kind"]]
        lines += [f"{d['model']}  ({d['model_type']}{', cahp-pruned' if d['pruned'] else ''}{kind})",
                  f"{'layer':>5} {'heads':>5} {'params':>12} {'MACs@' + str(seq_len):>14}"]
        lines += [f"{c['layer']:>5} {c['heads']:>5} {c['params']:>12,} {c['macs']:>14,}" for c in d["layers"]]
        lines.append(f"total: {d['heads']} heads, {d['total_params']:,} params, {d['total_macs']:,} MACs "
                     f"({2 * d['total_macs'] / 1e9:.2f} GFLOPs) at seq {seq_len}")
    if d.get("onnx"):
        o = d["onnx"]
        dtypes = ", ".join(f"{n:,} {t}" for t, n in sorted(o["params_by_dtype"].items()))
        lines += [f"onnx: {Path(o['file']).name} {o['size_mb']} MB, opset {o['opset']}, {o['nodes']} nodes"
                  f"{', quantized' if o['quantized'] else ''}; stored {dtypes}"]
    if d.get("release"):
        r = d["release"]
        lines.append(f"release: target {r.get('target')}, shipped accuracy {r.get('accuracy')}, budgets "
                     f"{r.get('budgets')}, pytorch/ {'included' if r['pytorch'] else 'not included'}")
    return lines


@app.command("reshape")
def reshape_cmd(
    model: Annotated[str, typer.Option(help="Dense checkpoint folder.")],
    plan: Annotated[Path, typer.Option(help="Head plan JSON (from `cahp-edge prune`).")],
    out: Annotated[Path, typer.Option(help="Output folder (must not exist or be empty).")],
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    as_json: Json = False,
    trust_pickle: TrustPickle = False,
) -> None:
    """Physically remove the heads a plan drops and save a reloadable pruned model."""
    from cahp_edge.errors import ModelError
    from cahp_edge.fsutil import check_output_dir
    from cahp_edge.model.accounting import model_cost
    from cahp_edge.model.load import load_model, save_pruned
    from cahp_edge.model.reshape import reshape
    from cahp_edge.plan import HeadPlan

    check_output_dir(out, overwrite, inputs=[model, plan])
    hp = HeadPlan.load(plan)
    lm = load_model(model, trust_pickle=trust_pickle, require_tokenizer=False)
    if lm.pruned:
        raise ModelError(f"{model} is already cahp-pruned (heads per layer {lm.heads_per_layer})",
                         "plans name heads of the dense source model and do not stack",
                         "reshape the dense source checkpoint with a plan over all its heads")
    pruned = reshape(lm.model, hp, lm.adapter)
    save_pruned(pruned, hp, out, lm.tokenizer, lm.source_hash, overwrite=overwrite)
    before, after = model_cost(lm.model, 128, lm.adapter), model_cost(pruned, 128, lm.adapter)
    d = {"out": str(out), "heads_per_layer": hp.heads_per_layer, "heads": [before.heads, after.heads],
         "params": [before.total_params, after.total_params],
         "macs_seq128": [before.total_macs, after.total_macs]}
    ffn = ""
    if hp.prunes_neurons:
        d["neurons_per_layer"] = hp.neurons_per_layer
        ffn = f", FFN neurons {sum(hp.num_neurons)} -> {sum(hp.neurons_per_layer)} {hp.neurons_per_layer}"
    note(f"reshape: {before.heads} -> {after.heads} heads {hp.heads_per_layer}{ffn}, params "
         f"{before.total_params:,} -> {after.total_params:,}, ideal speedup at seq 128 "
         f"{before.total_macs / after.total_macs:.2f}x")
    emit(d, as_json, str(out))
