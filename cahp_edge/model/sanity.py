"""Is this classifier worth pruning? Dense accuracy against the majority class and chance, and the loss
against ln(num_labels) (what an untrained head scores), on the evaluation split.

    health = model_health(model, tokenizer, eval_ds)        # before pruning (build) or after finetune
    if health.weak: ...                                      # health.reason says why, in one line

A model that is no better than always answering the most common label gives pruning nothing to
preserve: the knee, the recovery and every budget would be measured against noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# an untrained head predicts near-uniform probabilities: mean loss ~ ln(C); above this share of it the
# model has learned next to nothing (unless its accuracy clearly beats the majority class anyway)
UNTRAINED_LOSS_SHARE = 0.97
CLEAR_MARGIN = 0.05  # accuracy points (fraction) above the majority class that count as learned


@dataclass
class Health:
    accuracy: float
    loss: float
    majority: float  # share of the most common label: what always answering it scores
    chance: float  # 1 / num_labels
    ln_labels: float
    n: int
    reason: str | None  # None when the model is fine

    @property
    def weak(self) -> bool:
        return self.reason is not None

    def to_dict(self) -> dict:
        return {**asdict(self), "weak": self.weak}


def judge(accuracy: float, loss: float, labels: list[int], num_labels: int) -> Health:
    """The verdict from measured numbers (pure: tested without a model)."""
    n = len(labels)
    majority = max((labels.count(c) for c in set(labels)), default=0) / max(1, n)
    chance, ln_c = 1.0 / max(1, num_labels), math.log(max(2, num_labels))
    reason = None
    if accuracy <= majority:
        reason = (f"accuracy {100 * accuracy:.1f}% is not above the majority class ({100 * majority:.1f}%; "
                  f"chance {100 * chance:.1f}%)")
    elif loss >= UNTRAINED_LOSS_SHARE * ln_c and accuracy < majority + CLEAR_MARGIN:
        # "above": confidently wrong (e.g. overfitted) scores worse than an untrained head
        where = "near" if loss < 1.03 * ln_c else "above"
        reason = (f"mean loss {loss:.3f} is {where} ln({num_labels}) = {ln_c:.3f} (what an untrained head "
                  f"scores) and accuracy {100 * accuracy:.1f}% barely beats the majority class "
                  f"({100 * majority:.1f}%)")
    return Health(accuracy, loss, majority, chance, ln_c, n, reason)


def model_health(model, tokenizer, ds, max_length: int = 128, batch_size: int = 64) -> Health:
    """Dense accuracy and mean cross-entropy of ``model`` on ``ds`` (labels aligned to the model)."""
    import torch

    from cahp_edge.data.encode import encode
    from cahp_edge.model.evaluate import predict_logits

    batches = encode(tokenizer, ds, max_length, batch_size)
    logits = predict_logits(model, batches)  # (N, C) in dataset order
    labels = torch.tensor(ds.labels)
    acc = float((logits.argmax(-1) == labels).float().mean())
    loss = float(torch.nn.functional.cross_entropy(logits, labels))
    return judge(acc, loss, list(ds.labels), model.config.num_labels)
