"""cahp-edge finetune --model BASE --data TRAIN [--eval DEV] --out DIR

Turns a base encoder (e.g. all-MiniLM-L6-v2, which has no classifier) into a sequence classifier for
the labels found in the training data, and saves a standard ``save_pretrained`` folder (safetensors +
tokenizer) atomically. ``config.json`` records id2label/label2id and ``cahp_input`` ("single" or
"pair") so later stages can check that data matches the model. ``cahp_finetune.json`` holds the
training options and the eval accuracy (measured on ``--eval``; on nothing when it is absent).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cahp_edge.data import TextDataset, align_labels, load_dataset
from cahp_edge.errors import ModelError
from cahp_edge.fsutil import atomic_dir, check_output_dir
from cahp_edge.model.sanity import model_health
from cahp_edge.train.loop import ProgressFn, TrainConfig, TrainResult, make_accelerator, train_classifier

META_FILE = "cahp_finetune.json"


@dataclass
class FinetuneResult:
    out: Path
    accuracy: float | None  # on the eval data; None without it
    eval_source: str | None
    label_names: list[str]
    train_rows: int
    seconds: float
    train: TrainResult
    options: dict = field(default_factory=dict)
    health: dict | None = None  # model.sanity verdict on the eval data (accuracy vs majority class, loss)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def _as_dataset(d, split: str | None = None) -> TextDataset:
    return d if isinstance(d, TextDataset) else load_dataset(d, split)


def load_base(model: str | Path, label_names: list[str], is_pair: bool, seed: int,
              auto_class: str = "AutoModelForSequenceClassification"):
    """Base encoder + fresh head (seeded) for these labels, and its tokenizer. ``auto_class`` is the
    task's transformers class (cahp_edge.tasks), e.g. AutoModelForTokenClassification."""
    import torch
    import transformers

    from cahp_edge.arch import get_adapter
    from cahp_edge.model.load import (
        HEADS_FILE,
        _config_like,
        load_tokenizer,
        read_config_dict,
        resolve_model_dir,
    )

    path = resolve_model_dir(model)
    cfg = read_config_dict(path)
    get_adapter(_config_like(cfg))  # unsupported families fail here, with the list of supported ones
    if (path / HEADS_FILE).is_file():
        raise ModelError(
            f"{path} is a cahp-pruned model",
            "finetune starts from a dense base encoder",
            "use `cahp-edge recover` to fine-tune a pruned model",
        )
    if not (path / "model.safetensors").is_file() and not list(path.glob("model-*.safetensors")):
        raise ModelError(
            f"no model.safetensors in {path}",
            "finetune loads safetensors weights only",
            "convert the checkpoint to safetensors",
        )
    tok = load_tokenizer(path, required=True)
    id2label = dict(enumerate(label_names))
    torch.manual_seed(seed)  # the new classifier's init
    try:
        m = getattr(transformers, auto_class).from_pretrained(
            str(path),
            num_labels=len(label_names),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            ignore_mismatched_sizes=True,
            use_safetensors=True,
        )
    except Exception as e:
        raise ModelError(
            f"could not load the base model in {path}",
            f"{type(e).__name__}: {str(e)[:300]}",
            "pass a complete save_pretrained() folder",
        ) from e
    m.config.cahp_input = "pair" if is_pair else "single"
    return m, tok, path


def finetune(
    model: str | Path,
    data,
    out: Path,
    eval_data=None,
    cfg: TrainConfig | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` (a TextDataset or a path) and save it to ``out``."""
    cfg = cfg or TrainConfig()
    cfg.check()
    out = Path(out)
    check_output_dir(out, overwrite)  # fail before minutes of training, not after
    t0 = time.perf_counter()
    train_ds = _as_dataset(data, "train")
    eval_ds = _as_dataset(eval_data, "dev") if eval_data is not None else None
    m, tok, path = load_base(model, train_ds.label_names, train_ds.is_pair, cfg.seed)
    train_ds = align_labels(train_ds, m.config.id2label)
    if eval_ds is not None:
        eval_ds = align_labels(eval_ds, m.config.id2label)  # an eval label unseen in training fails here
    acc = make_accelerator(cfg.cpu)
    m, res = train_classifier(m, tok, train_ds, cfg, progress=progress, accelerator=acc)
    accuracy = health = None
    if eval_ds is not None and acc.is_main_process:
        verdict = model_health(m, tok, eval_ds, max_length=cfg.max_length)
        accuracy, health = verdict.accuracy, verdict.to_dict()
    opts = {k: v for k, v in asdict(cfg).items() if k not in ("alpha", "temperature")}
    result = FinetuneResult(
        out,
        accuracy,
        eval_ds.source if eval_ds else None,
        list(train_ds.label_names),
        len(train_ds),
        0.0,
        res,
        opts,
        health,
    )
    if acc.is_main_process:
        m = m.to("cpu")
        with atomic_dir(out, overwrite=overwrite) as tmp:
            m.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
            meta = {
                "base_model": str(model),
                "base_path": str(path),
                "train_data": train_ds.source,
                "eval_data": result.eval_source,
                "eval_accuracy": accuracy,
                "train_rows": len(train_ds),
                "label_names": result.label_names,
                "options": opts,
                "train": res.to_dict(),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    acc.wait_for_everyone()
    result.seconds = time.perf_counter() - t0
    return result
