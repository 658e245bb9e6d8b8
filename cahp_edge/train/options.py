"""Options of the training loop (`finetune`, `recover`) and of the build's recovery stage.

    LoopOptions(learning_rate=3e-5, alpha=0.5)     # `--lr`, `--alpha`, `--temperature` in every command
    RecoverOptions.pick(build_options)             # + recover_epochs, distill: the build's recovery stage

The data-side knobs a loop uses (batch size, max length, seed, columns) are ``DataOptions``'.
"""

from __future__ import annotations

from cahp_edge.options import StageOptions, opt

FINETUNE_LR, RECOVER_LR = 5e-5, 3e-5  # default peak learning rates: a new head vs a nearly trained model


class LoopOptions(StageOptions):
    """What the optimisation loop takes besides the data (AdamW, linear decay, optional distillation)."""

    learning_rate: float | None = opt(
        None, f"Peak learning rate (default {FINETUNE_LR:g} to fine-tune, {RECOVER_LR:g} to recover).",
        cli="--lr", gt=0.0)
    alpha: float = opt(0.5, "Weight of the distillation loss (when a teacher is given).", ge=0.0, le=1.0)
    temperature: float = opt(2.0, "Distillation temperature.", gt=0.0)

    def lr(self, recovering: bool) -> float:
        return self.learning_rate or (RECOVER_LR if recovering else FINETUNE_LR)


class RecoverOptions(LoopOptions):
    """One recovery fine-tune of the reshaped model on the training data (a build stage)."""

    recover_epochs: float = opt(1.0, "Recovery fine-tune epochs (0 = none).", ge=0.0)
    distill: bool = opt(False, "Distil the dense model's logits during recovery.")
