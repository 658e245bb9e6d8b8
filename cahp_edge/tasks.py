"""The task registry: what a model does, as data (issue 16).

    task = get_task("sentence-embedding")        # or detect_task(checkpoint_dir)
    task.metric, task.onnx_output, task.runner_returns

Every phase reads the record instead of branching on a task name: which transformers class holds the
head, which output the exported graph names, which loss drives salience and recovery, which metric a
release is judged on, and what the torch-free device runner returns. The phase code that implements
a field lives in its own phase (losses and scores in ``cahp_edge.model.task_ops``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cahp_edge.errors import ModelError


@dataclass(frozen=True)
class Task:
    name: str
    auto_class: str  # transformers class that loads the checkpoint (the head included)
    architecture_suffix: str | None  # config.json "architectures" entries that mark this task
    labelled: bool  # the model predicts named labels (config id2label); False: embeddings
    onnx_output: str  # the exported graph's single output
    output_rank: int  # (B, C) logits, (B, D) embeddings, (B, T, C) token logits
    metric: str  # what releases are judged on (eval data with labels / scores)
    metric_label: str
    agreement: str  # what the selection split measures against the dense model (no labels needed)
    select_loss: str  # the loss whose mask gradients rank heads and neurons
    runner_returns: str  # what `python -m cahp_edge.runtime` returns per input

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


SEQUENCE_CLASSIFICATION = Task(
    name="sequence-classification",
    auto_class="AutoModelForSequenceClassification",
    architecture_suffix="ForSequenceClassification",
    labelled=True,
    onnx_output="logits",
    output_rank=2,
    metric="accuracy",
    metric_label="accuracy",
    agreement="argmax agreement with the dense model",
    select_loss="cross-entropy against gold labels, or the dense model's argmax on unlabelled text",
    runner_returns="label and probability per text",
)
SENTENCE_EMBEDDING = Task(
    name="sentence-embedding",
    auto_class="AutoModel",
    architecture_suffix=None,  # a plain encoder; detected from sentence-transformers' modules.json
    labelled=False,
    onnx_output="sentence_embedding",
    output_rank=2,
    metric="spearman",
    metric_label="Spearman x100 of cosine vs gold similarity (STS)",
    agreement="mean cosine to the dense model's embedding",
    select_loss="in-batch contrastive loss against the dense model's embeddings",
    runner_returns="one pooled (and normalised, if the checkpoint says so) vector per text",
)
TOKEN_CLASSIFICATION = Task(
    name="token-classification",
    auto_class="AutoModelForTokenClassification",
    architecture_suffix="ForTokenClassification",
    labelled=True,
    onnx_output="logits",
    output_rank=3,
    metric="entity_f1",
    metric_label="entity-level F1 (seqeval)",
    agreement="tag agreement with the dense model on first sub-tokens",
    select_loss="token cross-entropy on first sub-tokens against gold tags or the dense model's tags",
    runner_returns="entity spans (type, start, end character offsets, text, score) per text",
)
# what an exported embedding folder carries so sentence-transformers' ONNX backend loads it
ST_FILES = ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json")
TASKS = {t.name: t for t in (SEQUENCE_CLASSIFICATION, SENTENCE_EMBEDDING, TOKEN_CLASSIFICATION)}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ModelError(f"unknown task {name!r}", f"known tasks: {', '.join(TASKS)}",
                         "pass one of them with --task") from None


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def is_sentence_transformers(path: Path) -> bool:
    """A sentence-transformers folder: modules.json naming a Pooling module."""
    mods = _json(Path(path) / "modules.json")
    return isinstance(mods, list) and any(
        isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling") for m in mods)


def detect_task(path: Path, config: dict | None = None) -> Task | None:
    """The task a checkpoint folder was made for, or None when it does not say (a bare encoder).

    A task head in config.json wins (a sentence-transformers folder fine-tuned into a classifier keeps
    its modules.json); otherwise modules.json with a Pooling module makes it an embedding model."""
    path = Path(path)
    cfg = config if config is not None else (_json(path / "config.json") or {})
    archs = [str(a) for a in (cfg.get("architectures") or [])] if isinstance(cfg, dict) else []
    for task in TASKS.values():
        if task.architecture_suffix and any(a.endswith(task.architecture_suffix) for a in archs):
            return task
    meta = _json(path / "cahp_heads.json")  # a pruned folder records the task it was pruned for
    if isinstance(meta, dict) and meta.get("task") in TASKS:
        return TASKS[meta["task"]]
    if is_sentence_transformers(path) or (path / "cahp_pooling.json").is_file():
        return SENTENCE_EMBEDDING
    return None
