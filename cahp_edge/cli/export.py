"""`cahp-edge export`, `cahp-edge optimize` and `cahp-edge quantize --target NAME`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cahp_edge.cli.app import Json, Quiet, TrustPickle, app, emit, note


@app.command("export")
def export_cmd(
    model: Annotated[str, typer.Argument(help="Checkpoint folder (dense or cahp-pruned).")],
    out: Annotated[Path, typer.Option(help="Output folder (must not exist or be empty).")],
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the target's, else 17).")] = None,
    target: Annotated[str | None, typer.Option(help="Take the opset from this target profile.")] = None,
    sentences: Annotated[Path | None, typer.Option(help="Text file, one sentence a line, for the parity "
                                                        "check (default: built-in sentences).")] = None,
    optimize: Annotated[bool, typer.Option(help="Also write OUT-optimized with fused attention.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    trust_pickle: TrustPickle = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Export to ONNX (legacy exporter, eager attention) and check parity with PyTorch."""
    from cahp_edge.deploy.export import check_opset, export_onnx
    from cahp_edge.errors import UsageError
    from cahp_edge.fsutil import check_output_dir
    from cahp_edge.model.load import load_model

    if opset is not None and target is not None:
        raise UsageError("--opset and --target both set the opset", "", "pass only one of them")
    if target is not None:
        from cahp_edge.targets.profile import load_target

        opset = load_target(target).opset
    opset = 17 if opset is None else opset
    check_opset(opset)
    check_output_dir(out, overwrite, inputs=[model, sentences])
    sents = _read_sentences(sentences) if sentences else None
    lm = load_model(model, trust_pickle=trust_pickle, require_tokenizer=False)
    res = export_onnx(lm, out, opset=opset, sentences=sents, overwrite=overwrite)
    d = res.to_dict()
    note(f"export: {res.onnx_path} opset {opset}, heads {res.heads_per_layer}, max |ORT - torch| "
         f"{res.parity.max_abs_diff:.1e} on {res.parity.n_examples} examples", quiet)
    if optimize:
        from cahp_edge.deploy.optimize import optimize_onnx

        opt = optimize_onnx(out, out.with_name(out.name + "-optimized"), overwrite=overwrite)
        d["optimized"] = opt.to_dict()
        _note_opt(opt, quiet)
    emit(d, as_json, str(out))


@app.command("optimize")
def optimize_cmd(
    src: Annotated[Path, typer.Argument(help="Folder written by `cahp-edge export`.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Fuse attention per layer with ONNX Runtime's transformer optimizer, checked against the plan."""
    from cahp_edge.deploy.optimize import optimize_onnx
    from cahp_edge.fsutil import check_output_dir

    check_output_dir(out, overwrite, inputs=[src])
    res = optimize_onnx(src, out, overwrite=overwrite)
    _note_opt(res, quiet)
    emit(res.to_dict(), as_json, str(out))


@app.command("quantize")
def quantize_cmd(
    src: Annotated[Path, typer.Argument(help="Folder written by `cahp-edge export` or `optimize`.")],
    target: Annotated[str, typer.Option(help="Target profile name or path to a .toml.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    calib_data: Annotated[Path | None, typer.Option(help="Task data for static calibration.")] = None,
    select_data: Annotated[Path | None, typer.Option(help="Labelled selection split for the accuracy "
                                                          "gate (keeps sensitive nodes in fp32).")] = None,
    calib_size: Annotated[int | None, typer.Option(min=1, help="Calibration examples (default: the "
                                                               "target's calibration_size).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Quantize for one target (recipe from its profile); gate accuracy on --select-data."""
    from cahp_edge.deploy.quantize import quantize
    from cahp_edge.fsutil import check_output_dir
    from cahp_edge.targets.profile import load_target

    t = load_target(target)
    check_output_dir(out, overwrite, inputs=[src, calib_data, select_data])
    calib = _read_data(calib_data, src) if calib_data else None
    select = _read_data(select_data, src) if select_data else None
    res = quantize(src, t, out, calib=calib, select=select, calib_size=calib_size, overwrite=overwrite)
    acc = res.accuracy
    measure = acc.get("measure", "accuracy") if acc else "accuracy"  # embeddings: cosine; taggers: tags
    extra = (f", {measure} {acc['fp32']:.3f} -> {acc['quantized']:.3f} (budget {acc['budget']:.3f})"
             if acc else "")
    agree = "mean cosine to fp32" if "cosine" in measure else "tag agreement" if "tag" in measure else \
        "argmax agreement"
    note(f"quantize[{t.name}]: {t.quantization.mode} {t.quantization.format}, {res.quantized_matmuls} "
         f"quantized matmuls, {agree} {res.agreement:.3f}{extra}", quiet)
    if res.fp32_nodes:
        note(f"kept in fp32: {', '.join(res.fp32_nodes)}", quiet)
    for w in res.warnings:
        note(f"warning: {w}", quiet)
    emit(res.to_dict(), as_json, str(out))


def _note_opt(res, quiet: bool) -> None:
    if res.fused:
        note(f"optimize: fused attention per layer {res.fused_heads}", quiet)
    for w in res.warnings:
        note(f"warning: {w}", quiet)


def _read_sentences(path: Path) -> list[str]:
    from cahp_edge.errors import DataError

    try:
        lines = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read sentences from {path}", str(e), "pass a UTF-8 text file") from e
    if not lines:
        raise DataError(f"{path} has no sentences", "", "one sentence per line")
    return lines


def _read_data(path: Path, folder: Path):
    import json

    from cahp_edge.data import align_labels, load_dataset

    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    task = config.get("cahp_task", "sequence-classification")
    if task == "sentence-embedding":  # any text: the gate is the mean cosine to the fp32 graph
        from cahp_edge.data.unlabelled import sentences

        return sentences(load_dataset(path, labels=False))
    if task == "token-classification":  # CoNLL or plain sentences: the gate is tag agreement
        from cahp_edge.build.tagged_data import as_text, read_tagged

        return as_text(read_tagged(str(path), "train"))
    return align_labels(load_dataset(path), config.get("id2label", {}))
