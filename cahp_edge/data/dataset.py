"""TextDataset (texts, optional pairs, integer labels with names) and the column and split defaults."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SPLIT_ALIASES = {
    "train": ("train",),
    "dev": ("dev", "validation", "val", "valid"),
    "validation": ("validation", "dev", "val", "valid"),
    "test": ("test",),
}
EXTS = (".txt", ".tsv", ".csv", ".jsonl", ".json", ".parquet")
PAIR_DEFAULTS = (
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
    ("text_a", "text_b"),
    ("text", "text_pair"),  # the device runner's eval.jsonl / eval.tsv, as every release ships it
)
TEXT_DEFAULTS = ("sentence", "text", "sentence1", "review", "content")
LABEL_DEFAULTS = ("label", "labels", "gold_label")
SCORE_DEFAULTS = ("score", "similarity", "label")  # graded pairs (STS): a float per row, not a class
DEMO_DATA = Path(__file__).parent / "demo_data"  # shipped sentiment_{train,dev}.tsv (negative/positive)
MISSING = {"", "nan", "none", "null", "na", "n/a"}


@dataclass
class TextDataset:
    texts: list[str]
    pairs: list[str] | None  # second text of a pair task (NLI, QNLI...); None for single-text tasks
    labels: list[int]  # index into label_names
    label_names: list[str]
    source: str = ""
    split: str = ""
    scores: list[float] | None = None  # graded similarity per row (STS-style evaluation); None otherwise

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def labelled(self) -> bool:
        """False for rows read without labels (labels are all -1 then; see load_dataset(labels=False))."""
        return bool(self.label_names)

    @property
    def is_pair(self) -> bool:
        return self.pairs is not None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subset(self, indices) -> TextDataset:
        idx = [int(i) for i in indices]
        return TextDataset(
            [self.texts[i] for i in idx],
            None if self.pairs is None else [self.pairs[i] for i in idx],
            [self.labels[i] for i in idx],
            list(self.label_names),
            self.source,
            self.split,
            None if self.scores is None else [self.scores[i] for i in idx],
        )

    def label_counts(self) -> dict[str, int]:
        """Rows per label name, in label-id order (zero counts included)."""
        c = Counter(self.labels)
        return {name: c.get(i, 0) for i, name in enumerate(self.label_names)}
