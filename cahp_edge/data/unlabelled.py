"""Unlabelled sentences for label-free pruning (embedding models): every distinct text of a dataset.

    train = sentences(load_dataset("stsb/train.tsv", "train", labels=False))   # both sides of each pair

A pair's two sides are embedded one at a time on a device (search, deduplication), so pruning sees them
one at a time too. Labels, if the file has them, are dropped: ``ignored_labels`` says so.
"""

from __future__ import annotations

from cahp_edge.data.dataset import TextDataset
from cahp_edge.errors import DataError


def sentences(ds: TextDataset) -> TextDataset:
    """Distinct texts of ``ds`` (pairs flattened, first occurrence order), unlabelled."""
    seen = dict.fromkeys([*ds.texts, *(ds.pairs or [])])
    texts = [t for t in seen if t.strip()]
    if not texts:
        raise DataError(f"{ds.source} has no text", "", "pass a file with one sentence per line")
    return TextDataset(texts, None, [-1] * len(texts), [], ds.source, ds.split)


def ignored_labels(ds: TextDataset) -> str | None:
    """The note a user gets when labelled data is given to a label-free task."""
    if not ds.labelled:
        return None
    return (f"{ds.source} has labels ({ds.num_labels} classes); an embedding model is pruned without labels, "
            "so they are ignored")
