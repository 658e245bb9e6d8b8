"""cahp-edge finetune --task token-classification --model BASE --data train.conll [--eval dev.conll] --out DIR

Turns a base encoder into a token classifier (NER) for the IOB2 tags found in the training data and
saves a ``save_pretrained`` folder (safetensors + tokenizer) atomically; ``config.json`` holds id2label
in ``TaggedDataset.tag_names()`` order. ``cahp_finetune.json`` records the options and the entity F1
on ``--eval`` (seqeval, conlleval counting). The loop is ``train.loop``'s (AdamW, linear warmup,
length-bucketed batches, Accelerate); HF's token-classification head computes the loss itself and
ignores the -100 labels on later sub-tokens and special tokens.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cahp_edge.data.tagged import IGNORE, TaggedDataset, align, check_tags, encode_tagged, read_conll
from cahp_edge.errors import DataError
from cahp_edge.fsutil import atomic_dir, check_output_dir
from cahp_edge.model.tagging import entity_scores, predict_tags
from cahp_edge.tasks import TOKEN_CLASSIFICATION
from cahp_edge.train.finetune import META_FILE, load_base
from cahp_edge.train.loop import (
    ProgressFn,
    TrainConfig,
    TrainResult,
    _bucketed_batches,
    make_accelerator,
    run_steps,
)


@dataclass
class TokenFinetuneResult:
    out: Path
    f1: float | None  # entity F1 on the eval data; None without it
    eval_source: str | None
    label_names: list[str]
    train_rows: int
    seconds: float
    train: TrainResult
    options: dict = field(default_factory=dict)
    scores: dict | None = None  # entity_scores on the eval data (precision, recall, support too)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def _as_tagged(d, split: str) -> TaggedDataset:
    return d if isinstance(d, TaggedDataset) else read_conll(d, split)


def train_tagger(model, tokenizer, ds: TaggedDataset, cfg: TrainConfig, progress: ProgressFn | None = None,
                 accelerator=None) -> tuple[object, TrainResult]:
    """Fine-tune a token-classification ``model`` on ``ds`` in place; return (unwrapped model, result)."""
    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    if len(ds) == 0:  # no batches would make the step loop below spin forever
        raise DataError(f"training data {ds.source} has no sentences", "",
                        "pass a file with tagged sentences")
    acc = accelerator or make_accelerator(cfg.cpu)
    set_seed(cfg.seed)
    enc = align(tokenizer, ds.words, ds.tags, model.config.label2id, cfg.max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    rows = [{k: enc[k][i] for k in (*keys, "labels")} for i in range(len(ds))]
    lengths = [len(r["input_ids"]) for r in rows]

    def collate(items):
        b = dict(tokenizer.pad([{k: r[k] for k in keys} for r in items], return_tensors="pt"))
        width = b["input_ids"].shape[1]
        left = tokenizer.padding_side == "left"
        b["labels"] = torch.tensor([[IGNORE] * (width - len(r["labels"])) + r["labels"] if left
                                    else r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in items])
        return b

    def loader(epoch: int):
        rng = random.Random(cfg.seed * 1000 + epoch)  # same order on every process; accelerate shards it
        order = _bucketed_batches(lengths, cfg.batch_size, rng)
        return acc.prepare_data_loader(DataLoader(rows, batch_sampler=order, collate_fn=collate))

    return run_steps(model, loader, cfg, acc, progress)


def finetune_tokens(base: str | Path, train, out: Path, eval_data=None, cfg: TrainConfig | None = None,
                    overwrite: bool = False, progress: ProgressFn | None = None) -> TokenFinetuneResult:
    """Fine-tune ``base`` on ``train`` (a TaggedDataset or a CoNLL path) and save it to ``out``."""
    cfg = cfg or TrainConfig()
    cfg.check()
    out = Path(out)
    check_output_dir(out, overwrite)  # fail before minutes of training, not after
    t0 = time.perf_counter()
    train_ds = _as_tagged(train, "train")
    eval_ds = _as_tagged(eval_data, "dev") if eval_data is not None else None
    if not train_ds.labelled:
        raise DataError(f"training data {train_ds.source} has no tags", "fine-tuning needs gold tags",
                        "pass a CoNLL file with a tag column")
    names = train_ds.tag_names()
    if eval_ds is not None:
        if not eval_ds.labelled:
            raise DataError(f"eval data {eval_ds.source} has no tags", "entity F1 needs gold tags",
                            "pass a CoNLL file with a tag column as --eval")
        check_tags(eval_ds, names)  # a tag unseen in training fails now, not after training
    m, tok, path = load_base(base, names, False, cfg.seed, auto_class=TOKEN_CLASSIFICATION.auto_class)
    acc = make_accelerator(cfg.cpu)
    m, res = train_tagger(m, tok, train_ds, cfg, progress=progress, accelerator=acc)
    scores = None
    if eval_ds is not None and acc.is_main_process:
        batches = encode_tagged(tok, eval_ds, m.config.label2id, cfg.max_length, cfg.batch_size)
        scores = entity_scores(eval_ds.tags, predict_tags(m, batches, m.config.id2label))
    opts = {k: v for k, v in asdict(cfg).items() if k not in ("alpha", "temperature")}
    f1 = None if scores is None else scores["f1"]
    result = TokenFinetuneResult(out, f1, eval_ds.source if eval_ds else None, names, len(train_ds), 0.0, res,
                                 opts, scores)
    if acc.is_main_process:
        m = m.to("cpu")
        with atomic_dir(out, overwrite=overwrite) as tmp:
            m.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
            meta = {"task": TOKEN_CLASSIFICATION.name, "base_model": str(base), "base_path": str(path),
                    "train_data": train_ds.source, "eval_data": result.eval_source, "eval_f1": result.f1,
                    "eval_scores": scores, "train_rows": len(train_ds), "label_names": names,
                    "options": opts, "train": res.to_dict()}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    acc.wait_for_everyone()
    result.seconds = time.perf_counter() - t0
    return result
