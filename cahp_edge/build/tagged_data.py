"""The token-classification task's data in a build: CoNLL files in, splits, the shipped eval rows.

Training, selection and evaluation rows are word-tagged sentences (cahp_edge.data.tagged). Calibration
and selection rows are disjoint seeded samples of the training file (tags need no stratifying: every
sentence mixes them); training rows may be plain text (one sentence per line), and selection then scores
tag agreement with the dense model on first sub-tokens.
"""

from __future__ import annotations

import random
from pathlib import Path

from cahp_edge.data.dataset import TextDataset
from cahp_edge.data.load import Splits
from cahp_edge.data.tagged import _TAG, TaggedDataset, check_tags, read_conll, read_plain_words
from cahp_edge.errors import DataError


def read_tagged(spec: str, split: str) -> TaggedDataset:
    """A CoNLL file (tags in the last column), or plain text (one sentence per line) when no line has
    more than one column."""
    path = Path(spec).expanduser()
    try:
        head = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines()[:200] if ln.strip()]
    except (OSError, UnicodeDecodeError):
        head = []  # read_conll names the problem
    tagged = all(len(c) >= 2 and _TAG.match(c[-1]) for c in head)
    return read_conll(path, split) if tagged or not head else read_plain_words(path, split)


def load(opts, id2label: dict) -> tuple[TaggedDataset, TaggedDataset | None, TaggedDataset | None]:
    names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    train = read_tagged(opts.data, "train")
    ev = read_conll(opts.eval, "dev") if opts.eval else None
    if ev is not None and not ev.labelled:
        raise DataError(f"evaluation data {ev.source} has no tags", "entity F1 needs gold tags",
                        "pass a CoNLL file with a tag column as --eval")
    sel = read_tagged(opts.select, "train") if opts.select else None
    for ds in (train, ev, sel):
        if ds is not None:
            check_tags(ds, names)
    return train, ev, sel


def splits(train: TaggedDataset, ev: TaggedDataset | None, calib_size: int, select_size: int, seed: int,
           sel: TaggedDataset | None = None) -> Splits:
    n = len(train)
    if calib_size >= n:
        raise DataError(f"calibration size {calib_size} leaves no training sentences for selection",
                        f"the training data has {n} sentences", f"pass --calib-size below {n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    calib = train.subset(sorted(order[:calib_size]))
    src = train.source
    sources = {"calib": f"{calib_size} random sentences of {src} (seed {seed})"}
    if sel is not None:
        pick = list(range(len(sel)))
        random.Random(seed + 1).shuffle(pick)
        select = sel.subset(sorted(pick[:select_size]))
        sources["select"] = f"{len(select)} random sentences of {sel.source} (seed {seed})"
    else:
        rest = order[calib_size:]
        select = train.subset(sorted(rest[:select_size]))
        sources["select"] = f"{len(select)} random sentences of {src} (seed {seed}, disjoint from calib)"
    if ev is None:
        rest = order[calib_size + select_size:]
        if not rest:
            raise DataError("no sentences left to evaluate on", "--eval was not given and calibration and "
                            "selection used every training sentence", "pass --eval (a CoNLL dev file)")
        ev = train.subset(sorted(rest))
        sources["eval"] = f"the {len(ev)} training sentences not used for calibration or selection"
    else:
        sources["eval"] = f"all {len(ev)} sentences of {ev.source}"
    return Splits(calib, select, ev, sources)


def as_text(ds: TaggedDataset) -> TextDataset:
    """The sentences as plain text (words joined by spaces), unlabelled: for the re-fit's calibration
    activations and the int8 gate's agreement rows."""
    texts = [" ".join(w) for w in ds.words]
    return TextDataset(texts, None, [-1] * len(texts), [], ds.source, ds.split)
