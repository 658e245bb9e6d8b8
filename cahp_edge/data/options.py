"""Options of the data stage: which columns, how long, how many rows go to calibration and selection."""

from __future__ import annotations

from typing import Literal

from cahp_edge.options import StageOptions, opt

TaskName = Literal["auto", "sequence-classification", "sentence-embedding", "token-classification"]


class DataOptions(StageOptions):
    """How training data becomes calibration / selection splits and batches (seeded, stratified)."""

    task: TaskName = opt("auto", "What the model does; auto: read from the checkpoint (cahp_edge.tasks); for "
                         "finetune, auto trains a sequence classifier.")
    text_column: str | None = opt(None, "Text column (csv/tsv/jsonl/parquet).")
    text_pair_column: str | None = opt(None, "Second text column (pair tasks).")
    label_column: str | None = opt(None, "Label column.")
    max_length: int = opt(128, "Max tokens per example.", ge=8, le=4096)
    batch_size: int = opt(32, "Examples per batch (calibration, evaluation, training).", ge=1)
    calib_size: int = opt(512, "Calibration examples (signatures, salience).", ge=1)
    select_size: int = opt(1000, "Selection examples (accuracy sweep for the knee).", ge=1)
    seed: int = opt(0, "Seed for splits, selection and training.")

    def columns(self) -> dict[str, str | None]:
        return {"text_column": self.text_column, "text_pair_column": self.text_pair_column,
                "label_column": self.label_column}
