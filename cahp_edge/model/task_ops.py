"""How each task's output tensor is compared with a target: the one place selection and gating ask.

    ops = ops_for(model)                     # by the model's task (cahp_edge.tasks)
    y = ops.target(dense_out)                # what "agree with the dense model" means
    loss = ops.loss(out, y)                  # summed over examples; drives mask gradients (Fisher)
    s = ops.score(out, y)                    # (N,) float per example: 1/0 correct, or a cosine

Targets are either gold labels or the dense model's own output on unlabelled text:
- sequence classification: class ids; score = argmax match; loss = cross-entropy.
- sentence embedding: the dense (B, D) embedding; score = cosine; loss = in-batch contrastive
  cross-entropy of ``out @ target.T / tau`` against the diagonal. Its gradient is not zero at the dense
  model (a plain MSE or 1 - cosine loss is at its minimum there, so every mask gradient would vanish).
- token classification: (B, T) tag ids with -100 where no word starts; score = fraction of scored tokens
  equal; loss = token cross-entropy over scored tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cahp_edge.tasks import SENTENCE_EMBEDDING, TASKS, TOKEN_CLASSIFICATION, Task

CONTRASTIVE_TAU = 0.05  # sentence-transformers' MultipleNegativesRankingLoss scale 20 = 1 / 0.05
IGNORE = -100


def task_of(model) -> Task:
    name = getattr(model, "cahp_task", None)
    if name in TASKS:
        return TASKS[name]
    archs = [type(model).__name__, *(getattr(getattr(model, "config", None), "architectures", None) or [])]
    if any(str(a).endswith("ForTokenClassification") for a in archs):
        return TOKEN_CLASSIFICATION
    return TASKS["sequence-classification"]


@dataclass(frozen=True)
class TaskOps:
    task: Task
    target: Callable[[torch.Tensor], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _cls_loss(out, y):
    return F.cross_entropy(out.float(), y, reduction="sum")


def _cls_score(out, y):
    return (out.argmax(-1) == y).float()


def _emb_target(out):
    return F.normalize(out.float(), dim=-1)


def _emb_loss(out, y):
    s = F.normalize(out.float(), dim=-1) @ y.float().T / CONTRASTIVE_TAU  # (B, B)
    return F.cross_entropy(s, torch.arange(len(s), device=s.device), reduction="sum")


def _emb_score(out, y):
    return F.cosine_similarity(out.float(), y.float(), dim=-1)


def _tok_target(out):
    return out.argmax(-1)  # (B, T); callers put IGNORE where no word starts


def _tok_loss(out, y):
    return F.cross_entropy(out.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum")


def _tok_score(out, y):
    scored = y != IGNORE  # (B, T)
    same = (out.argmax(-1) == y) & scored
    return same.sum(1).float() / scored.sum(1).clamp_min(1).float()


OPS = {
    "sequence-classification": TaskOps(TASKS["sequence-classification"], lambda o: o.argmax(-1), _cls_loss,
                                       _cls_score),
    SENTENCE_EMBEDDING.name: TaskOps(SENTENCE_EMBEDDING, _emb_target, _emb_loss, _emb_score),
    TOKEN_CLASSIFICATION.name: TaskOps(TOKEN_CLASSIFICATION, _tok_target, _tok_loss, _tok_score),
}


def ops_for(model) -> TaskOps:
    return OPS[task_of(model).name]
