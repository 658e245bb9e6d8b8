"""Labelled text data: load any supported format, align labels with a model, split, tokenize.

    from cahp_edge.data import load_dataset, align_labels, make_splits, encode

The public names live in :mod:`.dataset` (TextDataset, column defaults), :mod:`.load` (loading,
label alignment, splits), :mod:`.formats` (one reader per file format) and :mod:`.encode` (batches).
Model evaluation on a dataset is one layer up, in :mod:`cahp_edge.model.evaluate`.
"""

from cahp_edge.data.dataset import (
    DEMO_DATA,
    LABEL_DEFAULTS,
    MISSING,
    PAIR_DEFAULTS,
    SPLIT_ALIASES,
    TEXT_DEFAULTS,
    TextDataset,
)
from cahp_edge.data.encode import encode
from cahp_edge.data.load import Splits, align_labels, check_task, load_dataset, make_splits
from cahp_edge.errors import DataError

__all__ = [
    "DEMO_DATA",
    "LABEL_DEFAULTS",
    "MISSING",
    "PAIR_DEFAULTS",
    "SPLIT_ALIASES",
    "TEXT_DEFAULTS",
    "DataError",
    "Splits",
    "TextDataset",
    "align_labels",
    "check_task",
    "encode",
    "load_dataset",
    "make_splits",
]
