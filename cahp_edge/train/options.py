"""Options of the recovery stage of a build (`cahp-edge recover` has the same meaning: cli/train.py)."""

from __future__ import annotations

from cahp_edge.options import StageOptions, opt


class RecoverOptions(StageOptions):
    """One recovery fine-tune of the reshaped model on the training data."""

    recover_epochs: float = opt(1.0, "Recovery fine-tune epochs (0 = none).", ge=0.0)
    distill: bool = opt(False, "Distil the dense model's logits during recovery.")
    learning_rate: float | None = opt(None, "Recovery learning rate (default 3e-5).", gt=0.0)
