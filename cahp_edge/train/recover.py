"""cahp-edge recover --model PRUNED_DIR --data TRAIN --out DIR [--teacher DENSE_DIR] [--eval DEV]
                  [--recover-method finetune|reconstruct|reconstruct+finetune]

Wins back accuracy of a reshaped (physically pruned) model: one fine-tune, optionally distilling the
dense model's logits (loss = (1 - alpha) * CE + alpha * T^2 * KL); or a layer-wise least-squares re-fit
of the output projections to the dense model's layer outputs (:mod:`cahp_edge.model.reconstruct`, seconds, no
gradients, needs the dense model as ``--teacher``); or the re-fit followed by the fine-tune. Works on any
head and FFN layout, including layers that keep no heads or no neurons. The result is saved with
:func:`cahp_edge.model.load.save_pruned`, so it reloads with ``load_pruned`` / ``load_model`` exactly
like the input.

Accuracy before/after is measured on ``--eval`` (the dev split); recovery trains on ``--data``
(the training split), never on the split it is scored on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cahp_edge.data import TextDataset, align_labels, check_task, load_dataset
from cahp_edge.errors import ModelError, UsageError
from cahp_edge.fsutil import check_output_dir
from cahp_edge.model.evaluate import evaluate_accuracy
from cahp_edge.train.loop import ProgressFn, TrainConfig, TrainResult, make_accelerator, train_classifier
from cahp_edge.train.options import ReconstructOptions


def recover(
    pruned_model,
    tokenizer,
    train_ds: TextDataset,
    epochs: float = 1.0,
    lr: float = 3e-5,
    distill_from=None,
    alpha: float = 0.5,
    temperature: float = 2.0,
    seed: int = 0,
    cfg: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    accelerator=None,
) -> tuple[object, TrainResult]:
    """Fine-tune ``pruned_model`` in place on ``train_ds`` (labels aligned here); return (model, result).

    ``distill_from``: the dense teacher (same tokenizer and labels), or None for plain cross-entropy.
    ``cfg`` overrides the scalar arguments when given.
    """
    cfg = cfg or TrainConfig(epochs=epochs, lr=lr, seed=seed, alpha=alpha, temperature=temperature)
    train_ds = align_labels(train_ds, pruned_model.config.id2label)
    check_task(train_ds, pruned_model.config)
    if distill_from is not None:
        t_labels = {int(k): v for k, v in distill_from.config.id2label.items()}
        s_labels = {int(k): v for k, v in pruned_model.config.id2label.items()}
        if t_labels != s_labels:
            raise ModelError(
                "the teacher's labels differ from the pruned model's",
                f"teacher {t_labels}, pruned {s_labels}",
                "pass the dense model the plan was made from",
            )
        distill_from.requires_grad_(False)
    return train_classifier(
        pruned_model,
        tokenizer,
        train_ds,
        cfg,
        teacher=distill_from,
        progress=progress,
        accelerator=accelerator,
    )


@dataclass
class RecoverResult:
    out: Path
    heads: int
    heads_per_layer: list[int]
    accuracy_before: float | None  # on eval_source, before recovery
    accuracy_after: float | None
    eval_source: str | None
    teacher: str | None
    seconds: float
    train: TrainResult  # steps == 0 when only reconstructed
    options: dict = field(default_factory=dict)
    reconstruction: dict | None = None  # cahp_edge.model.reconstruct.ReconstructReport.to_dict()
    accuracy_reconstructed: float | None = None  # on eval_source, after the re-fit, before any fine-tune

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def recover_dir(
    model: str | Path,
    data,
    out: Path,
    teacher: str | Path | None = None,
    eval_data=None,
    cfg: TrainConfig | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    rec: ReconstructOptions | None = None,
    dense: str | Path | None = None,
) -> RecoverResult:
    """Load a pruned folder, recover it on ``data``, save to ``out`` (main process only).

    ``teacher``: the dense model to distil from during a fine-tune (and to re-fit to, unless ``dense``
    names it separately). ``rec``: which recovery (default: fine-tune only)."""
    from cahp_edge.model.load import load_model, read_heads_file, save_pruned

    cfg = cfg or TrainConfig(lr=3e-5)
    cfg.check()
    dense = dense if dense is not None else teacher
    out = Path(out)
    check_output_dir(out, overwrite)
    t0 = time.perf_counter()
    lm = load_model(model, require_tokenizer=True)
    if not lm.pruned:
        raise ModelError(
            f"{lm.path} is not a cahp-pruned model (no cahp_heads.json)",
            "recover fine-tunes the output of `cahp-edge reshape`",
            "pass the pruned folder, or use `cahp-edge finetune` for a dense model",
        )
    plan, _meta = read_heads_file(lm.path)
    label_free = lm.task == "sentence-embedding"
    rec = (rec or ReconstructOptions()).resolved(plan.prunes_neurons, label_free=label_free)
    if rec.finetunes and label_free:
        raise UsageError(f"--recover-method {rec.recover_method} fine-tunes on labels",
                         "an embedding model is recovered without labels, by the re-fit to the dense model",
                         "pass --recover-method reconstruct (the default for embedding models)")
    if rec.reconstructs and dense is None:
        raise UsageError(f"--recover-method {rec.recover_method} needs the dense model",
                         "the re-fit matches the dense model's layer outputs",
                         "pass --teacher DENSE_DIR (the model the plan was made from), or "
                         "--recover-method finetune")
    train_ds = data if isinstance(data, TextDataset) else load_dataset(data, "train")
    eval_ds = None
    if eval_data is not None:
        eval_ds = eval_data if isinstance(eval_data, TextDataset) else load_dataset(eval_data, "dev")
        eval_ds = align_labels(eval_ds, lm.model.config.id2label)
    t_model = None
    if teacher is not None:
        t_model = load_model(teacher, require_tokenizer=False).model
    acc = make_accelerator(cfg.cpu)
    before = None
    if eval_ds is not None and acc.is_main_process:
        before = evaluate_accuracy(lm.model.to(acc.device), lm.tokenizer, eval_ds, max_length=cfg.max_length)
    recon = recon_acc = None
    if rec.reconstructs:
        d_model = t_model if dense == teacher and t_model is not None else \
            load_model(dense, require_tokenizer=False).model
        recon = _reconstruct(lm, d_model, train_ds, rec, cfg, progress).to_dict()
        if eval_ds is not None and acc.is_main_process:
            recon_acc = evaluate_accuracy(lm.model, lm.tokenizer, eval_ds, max_length=cfg.max_length)
    if rec.finetunes and cfg.epochs > 0:
        m, res = recover(lm.model, lm.tokenizer, train_ds, distill_from=t_model, cfg=cfg, progress=progress,
                         accelerator=acc)
    else:
        m, res = lm.model, TrainResult(0, 0.0, 0, float("nan"), 0.0, acc.num_processes, str(acc.device),
                                       acc.is_main_process)
    after = None
    if eval_ds is not None and acc.is_main_process:
        after = evaluate_accuracy(m, lm.tokenizer, eval_ds, max_length=cfg.max_length)
    if acc.is_main_process:
        plan.meta.update(
            {
                "recovery": {
                    "train_data": train_ds.source,
                    "teacher": str(teacher) if teacher else None,
                    "eval_data": eval_ds.source if eval_ds else None,
                    "accuracy_before": before,
                    "accuracy_after": after,
                    "options": asdict(cfg),
                    "train": res.to_dict(),
                    "method": rec.recover_method,
                    "reconstruction": recon,
                    "accuracy_reconstructed": recon_acc,
                }
            }
        )
        save_pruned(m.to("cpu"), plan, out, lm.tokenizer, lm.source_hash, overwrite=overwrite)
    acc.wait_for_everyone()
    return RecoverResult(
        out,
        sum(plan.heads_per_layer),
        list(plan.heads_per_layer),
        before,
        after,
        eval_ds.source if eval_ds else None,
        str(teacher) if teacher else None,
        time.perf_counter() - t0,
        res,
        asdict(cfg) | rec.model_dump(),
        recon,
        recon_acc,
    )


def _reconstruct(lm, dense_model, train_ds: TextDataset, rec: ReconstructOptions, cfg: TrainConfig,
                 progress: ProgressFn | None):
    """The least-squares re-fit on ``rec.reconstruct_rows`` seeded training rows (in place)."""
    import random

    from cahp_edge.data import encode
    from cahp_edge.model.reconstruct import reconstruct

    if {int(k): v for k, v in dense_model.config.id2label.items()} != \
            {int(k): v for k, v in lm.model.config.id2label.items()}:
        raise ModelError("the dense model's labels differ from the pruned model's", "",
                         "pass the dense model the plan was made from")
    n = min(rec.reconstruct_rows, len(train_ds))
    rows = sorted(random.Random(cfg.seed).sample(range(len(train_ds)), n))
    batches = encode(lm.tokenizer, train_ds.subset(rows), max_length=cfg.max_length, batch_size=32)
    tick = (lambda done, total: progress(done, total, float("nan"))) if progress else None
    return reconstruct(lm.model.cpu(), dense_model.cpu(), lm.adapter, batches, rec.reconstruct_damp, tick)
