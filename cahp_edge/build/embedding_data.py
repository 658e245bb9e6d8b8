"""The sentence-embedding task's data in a build: unlabelled sentences in, graded pairs for reporting.

Training and selection rows are every distinct sentence of the given files (a pair's two sides become two
rows; labels or scores there are never read: cahp_edge.data.unlabelled). Evaluation rows are pairs with a
graded similarity (STS), scored by Spearman of cosine vs score; they are required, since nothing else in
a label-free build measures quality.
"""

from __future__ import annotations

from cahp_edge.data import load_dataset
from cahp_edge.data.dataset import TextDataset
from cahp_edge.data.unlabelled import sentences
from cahp_edge.errors import DataError

EVAL_FIX = "pass --eval with sentence1, sentence2 and score columns (e.g. STS-B dev.tsv)"


def load(opts) -> tuple[TextDataset, TextDataset, TextDataset | None]:
    cols = {"text_column": opts.text_column, "text_pair_column": opts.text_pair_column}
    train = sentences(load_dataset(opts.data, "train", **cols, label_column=None, labels=False))
    if not opts.eval:
        raise DataError("an embedding build needs --eval", "its quality is Spearman correlation on pairs "
                        "with a graded similarity (STS), and the training text has no scores", EVAL_FIX)
    ev = load_dataset(opts.eval, "dev", **cols, label_column=opts.label_column, scores=True)
    if ev.pairs is None:
        raise DataError(f"evaluation data {ev.source} has single texts",
                        "an embedding model is scored on pairs with a graded similarity (STS)", EVAL_FIX)
    sel = None
    if opts.select:
        sel = sentences(load_dataset(opts.select, "train", **cols, label_column=None, labels=False))
    return train, ev, sel
