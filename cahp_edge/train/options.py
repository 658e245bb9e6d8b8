"""Options of the training loop (`finetune`, `recover`) and of the build's recovery stage.

    LoopOptions(learning_rate=3e-5, alpha=0.5)     # `--lr`, `--alpha`, `--temperature` in every command
    RecoverOptions.pick(build_options)             # + recover_epochs, distill: the build's recovery stage

The data-side knobs a loop uses (batch size, max length, seed, columns) are ``DataOptions``'.
"""

from __future__ import annotations

from typing import Literal, Self

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


class ReconstructOptions(StageOptions):
    """How a pruned model wins accuracy back: a least-squares re-fit of each layer's output projections
    to the dense model's layer outputs (seconds, no gradients: cahp_edge.model.reconstruct), a fine-tune,
    or the re-fit followed by the fine-tune."""

    recover_method: Literal["auto", "finetune", "reconstruct", "reconstruct+finetune"] = opt(
        "auto", "Recovery: finetune (gradient epochs), reconstruct (layer-wise least squares, needs the "
        "dense model) or reconstruct+finetune. auto: finetune for head plans; for heads + neurons plans "
        "reconstruct without a GPU, reconstruct+finetune with one.")
    reconstruct_rows: int = opt(512, "Training rows the least-squares re-fit is fitted on.", ge=8, le=200_000)
    reconstruct_damp: float = opt(0.01, "Ridge damping of the re-fit, relative to the mean input energy.",
                                  ge=0.0, le=10.0)

    def resolved(self, prunes_neurons: bool, label_free: bool = False) -> Self:
        """These options with "auto" replaced by what runs for a plan of this kind (docs/cahp.md).
        ``label_free``: a task recovered without labels (embeddings): the re-fit to the dense model."""
        if self.recover_method != "auto":
            return self
        if label_free:
            return self.model_copy(update={"recover_method": "reconstruct"})
        method = "finetune"
        if prunes_neurons:
            import torch  # only here: options stay torch-free for the CLI

            method = "reconstruct+finetune" if torch.cuda.is_available() else "reconstruct"
        return self.model_copy(update={"recover_method": method})

    @property
    def reconstructs(self) -> bool:
        return self.recover_method.startswith("reconstruct")

    @property
    def finetunes(self) -> bool:
        return self.recover_method.endswith("finetune")


class RecoverOptions(LoopOptions, ReconstructOptions):
    """Recovery of the reshaped model on the training data (a build stage)."""

    recover_epochs: float = opt(1.0, "Recovery fine-tune epochs (0 = none).", ge=0.0)
    distill: bool = opt(False, "Distil the dense model's logits during recovery.")
