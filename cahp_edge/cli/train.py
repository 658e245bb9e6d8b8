"""`cahp-edge finetune` and `cahp-edge recover`: the two commands that train.

Both run under ``accelerate launch --multi_gpu`` (GPUs, multi-node) and under
``torchrun --standalone --nproc_per_node N -m cahp_edge ... --cpu`` (CPU processes); only the main
process writes the output folder and prints. See cahp_edge/train/loop.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cahp_edge.cli.app import Json, Quiet, app, emit, note
from cahp_edge.cli.options import stage_options
from cahp_edge.cli.progress import Progress
from cahp_edge.data.options import DataOptions
from cahp_edge.train.options import LoopOptions, ReconstructOptions

_Data = Annotated[str, typer.Option("--data", help="Training data: file, folder (train split) or hub name.")]
_Eval = Annotated[
    str | None, typer.Option("--eval", help="Evaluation data (dev/validation); reported accuracy.")
]
_Out = Annotated[Path, typer.Option("--out", help="Output folder (must not exist or be empty).")]
_Cpu = Annotated[bool, typer.Option("--cpu", help="Train on CPU even when a GPU is present.")]
_Overwrite = Annotated[bool, typer.Option(help="Replace a non-empty --out.")]


def _progress(quiet: bool, what: str) -> tuple[Progress, object]:
    """A progress display and the training loop's callback (step, total, running loss) feeding it."""
    shown = Progress(quiet)
    return shown, lambda step, total, loss: shown.update(what, step, total,
                                                        f"loss {loss:.3f}" if loss == loss else "")


def _load(spec: str | None, split: str, data_opts: DataOptions):
    from cahp_edge.data import load_dataset

    if spec is None:
        return None
    return load_dataset(spec, split, **data_opts.columns())


_NOT_SPLITS = ("calib_size", "select_size")  # head-selection splits: not a training loop's business


@app.command()
@stage_options(data_opts=DataOptions, loop=LoopOptions, exclude=(*_NOT_SPLITS, "alpha", "temperature"))
def finetune(
    model: Annotated[str, typer.Option(help="Base encoder folder or hub id (e.g. all-MiniLM-L6-v2).")],
    data: _Data,
    out: _Out,
    data_opts: DataOptions,
    loop: LoopOptions,
    eval_data: _Eval = None,
    epochs: Annotated[float, typer.Option(help="Training epochs (fractions allowed).")] = 1.0,
    cpu: _Cpu = False,
    overwrite: _Overwrite = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Turn a base encoder into a classifier for the labels in --data; report accuracy on --eval.
    --task token-classification: a token classifier (NER) on CoNLL files with IOB2 tags, scored by
    entity F1 (seqeval)."""
    from cahp_edge.fsutil import check_output_dir
    from cahp_edge.train.finetune import finetune as run
    from cahp_edge.train.loop import TrainConfig

    cfg = TrainConfig.from_options(data_opts, loop, epochs, recovering=False, cpu=cpu)
    cfg.check()
    check_output_dir(out, overwrite, inputs=[model, data, eval_data])
    if data_opts.task == "sentence-embedding":
        from cahp_edge.errors import UsageError

        raise UsageError("finetune does not train embedding models",
                         "an embedding model is pruned as it is, without labels",
                         "pass the sentence-transformers folder to `cahp-edge build` directly")
    if data_opts.task == "token-classification":
        _finetune_tokens(model, data, eval_data, out, cfg, overwrite, as_json, quiet)
        return
    train_ds = _load(data, "train", data_opts)
    eval_ds = _load(eval_data, "dev", data_opts)
    shown, cb = _progress(quiet or as_json, "finetune")
    try:
        res = run(model, train_ds, out, eval_ds, cfg, overwrite=overwrite, progress=cb)
    finally:
        shown.stop()
    if not res.train.is_main_process:
        return
    if res.health and res.health["weak"]:  # a warning, not an error: the model is saved either way
        note(f"warning: this model is not worth pruning yet: {res.health['reason']} on {res.eval_source}. "
             "Fix: train longer (--epochs) or with another --lr; `cahp-edge build` refuses it unless "
             "--allow-weak-model")
    acc = "n/a (no --eval)" if res.accuracy is None else f"{100 * res.accuracy:.1f}% on {res.eval_source}"
    note(
        f"finetune: {res.train_rows} rows x {epochs:g} epoch(s), {len(res.label_names)} labels, "
        f"{res.train.steps} steps on {res.train.device} x{res.train.num_processes}, {res.seconds:.0f} s; "
        f"accuracy {acc}; saved {out}",
        quiet or as_json,
    )
    emit(res.to_dict(), as_json)


def _finetune_tokens(model, data, eval_data, out, cfg, overwrite: bool, as_json: bool, quiet: bool) -> None:
    from cahp_edge.data.tagged import read_conll
    from cahp_edge.train.tokens import finetune_tokens

    train_ds = read_conll(data, "train")
    eval_ds = None if eval_data is None else read_conll(eval_data, "dev")
    shown, cb = _progress(quiet or as_json, "finetune")
    try:
        res = finetune_tokens(model, train_ds, out, eval_ds, cfg, overwrite=overwrite, progress=cb)
    finally:
        shown.stop()
    if not res.train.is_main_process:
        return
    f1 = "n/a (no --eval)" if res.f1 is None else f"{100 * res.f1:.1f} on {res.eval_source}"
    note(
        f"finetune: {res.train_rows} sentences x {cfg.epochs:g} epoch(s), {len(res.label_names)} tags, "
        f"{res.train.steps} steps on {res.train.device} x{res.train.num_processes}, {res.seconds:.0f} s; "
        f"entity F1 {f1}; saved {out}",
        quiet or as_json,
    )
    emit(res.to_dict(), as_json)


@app.command()
@stage_options(data_opts=DataOptions, loop=LoopOptions, rec=ReconstructOptions, exclude=_NOT_SPLITS)
def recover(
    model: Annotated[str, typer.Option(help="Pruned model folder (from `cahp-edge reshape`).")],
    data: _Data,
    out: _Out,
    data_opts: DataOptions,
    loop: LoopOptions,
    rec: ReconstructOptions,
    teacher: Annotated[str | None, typer.Option(
        help="Dense model folder: distilled from during a fine-tune, matched by --recover-method "
             "reconstruct.")] = None,
    eval_data: _Eval = None,
    epochs: Annotated[float, typer.Option(help="Recovery epochs (fractions allowed).")] = 1.0,
    cpu: _Cpu = False,
    overwrite: _Overwrite = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Win back a pruned model's accuracy: fine-tune (optionally distilling the dense model), or re-fit its
    output projections to the dense model's layer outputs by least squares (--recover-method)."""
    from cahp_edge.fsutil import check_output_dir
    from cahp_edge.train.loop import TrainConfig
    from cahp_edge.train.recover import recover_dir

    cfg = TrainConfig.from_options(data_opts, loop, epochs, recovering=True, cpu=cpu)
    cfg.check()
    check_output_dir(out, overwrite, inputs=[model, data, eval_data, teacher])
    train_ds = _load(data, "train", data_opts)
    eval_ds = _load(eval_data, "dev", data_opts)
    shown, cb = _progress(quiet or as_json, "recover")
    try:
        res = recover_dir(model, train_ds, out, teacher=teacher, eval_data=eval_ds, cfg=cfg,
                          overwrite=overwrite, progress=cb, rec=rec)
    finally:
        shown.stop()
    if not res.train.is_main_process:
        return
    acc = (
        "n/a (no --eval)"
        if res.accuracy_after is None
        else f"{100 * res.accuracy_before:.1f}% -> {100 * res.accuracy_after:.1f}% on {res.eval_source}"
    )
    how = []
    if res.reconstruction is not None:
        r = res.reconstruction
        acc_r = res.accuracy_reconstructed
        mid = "" if acc_r is None else f", {100 * acc_r:.1f}% after it"
        how.append(f"least-squares re-fit on {r['positions']} tokens in {r['seconds']:.1f} s "
                   f"(layer error x{r['error_ratio']:.2f}{mid})")
    if res.train.steps:
        how.append(f"{res.train.steps} steps{' with distillation' if teacher else ''} "
                   f"on {res.train.device} x{res.train.num_processes}")
    note(f"recover: {res.heads} heads, {' then '.join(how) or 'nothing to do'}, {res.seconds:.0f} s; "
         f"accuracy {acc}; saved {out}", quiet or as_json)
    emit(res.to_dict(), as_json)
