"""Word-tagged data for token classification (NER): read CoNLL files, align word tags to sub-tokens.

    ds = read_conll("conll2003/valid.txt", "dev")            # words + IOB2 tags per sentence
    batches = encode_tagged(tokenizer, ds, label2id)          # length-sorted, padded per batch

A model sees sub-tokens, the data has words: only the first sub-token of each word carries the word's
tag (``labels``); later sub-tokens, special tokens and padding get -100, which HF's token-classification
loss ignores. Predictions are read back at the same first sub-tokens (``cahp_edge.model.tagging``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cahp_edge.errors import DataError, ModelError

IGNORE = -100  # HF's CrossEntropyLoss ignore_index
_TAG = re.compile(r"^(O|[BI]-\S+)$")


@dataclass
class TaggedDataset:
    words: list[list[str]]
    tags: list[list[str]] | None  # None: unlabelled words (pruning / agreement only)
    source: str = ""
    split: str = ""

    def __len__(self) -> int:
        return len(self.words)

    @property
    def labelled(self) -> bool:
        return self.tags is not None

    def subset(self, indices) -> TaggedDataset:
        idx = list(indices)
        tags = None if self.tags is None else [self.tags[i] for i in idx]
        return TaggedDataset([self.words[i] for i in idx], tags, self.source, self.split)

    def tag_names(self) -> list[str]:
        """The tags in the data: "O" first, then by entity type, B- before I- (a stable id order)."""
        if self.tags is None:
            raise DataError(f"{self.source or 'the data'} has no tags", "it is unlabelled text",
                            "pass a CoNLL file with a tag column")
        return sorted({t for row in self.tags for t in row}, key=_tag_key)


def _tag_key(tag: str) -> tuple:
    return (0, "", "") if tag == "O" else (1, tag[2:], tag[:1])


def _read_lines(path: Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist", "", "pass the path of a CoNLL or text file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}", f"{type(e).__name__}: {e}",
                        "pass a readable UTF-8 file") from e
    if not text.strip():
        raise DataError(f"data file {path} is empty", "", "pass a file with at least one sentence")
    return text.splitlines()


def read_conll(path: str | Path, split: str = "") -> TaggedDataset:
    """CoNLL columns (``token ... TAG``, blank line between sentences, ``-DOCSTART-`` lines skipped):
    the token is the first column, the IOB2 tag the last. Single-column lines are unlabelled words."""
    path = Path(path)
    words: list[list[str]] = []
    tags: list[list[str]] = []
    sent_w: list[str] = []
    sent_t: list[str] = []
    labelled: bool | None = None  # decided by the first word line; every other line must agree
    for no, line in enumerate(_read_lines(path), 1):
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if sent_w:
                words.append(sent_w)
                tags.append(sent_t)
            sent_w, sent_t = [], []
            continue
        has_tag = len(cols) > 1
        if labelled is None:
            labelled = has_tag
        elif has_tag != labelled:
            raise DataError(
                f"{path}:{no} has {len(cols)} column(s)",
                f"earlier lines are {'labelled (token ... TAG)' if labelled else 'unlabelled (one word)'}",
                "give every word line the same columns",
            )
        if has_tag and not _TAG.match(cols[-1]):
            raise DataError(f"{path}:{no}: tag {cols[-1]!r} is not IOB2",
                            "tags must be O, B-TYPE or I-TYPE (the last column)",
                            "convert the tags to IOB2 (e.g. B-PER, I-PER, O)")
        sent_w.append(cols[0])
        sent_t.append(cols[-1])
    if sent_w:
        words.append(sent_w)
        tags.append(sent_t)
    if not words:
        raise DataError(f"{path} has no sentences", "only blank or -DOCSTART- lines",
                        "pass a CoNLL file with word lines")
    return TaggedDataset(words, tags if labelled else None, str(path), split)


def read_plain_words(path: str | Path, split: str = "") -> TaggedDataset:
    """Plain text, one sentence per line, split on whitespace: unlabelled words (for pruning)."""
    words = [line.split() for line in _read_lines(Path(path))]
    return TaggedDataset([w for w in words if w], None, str(path), split)


def _unknown(tags: list[list[str]], known) -> Counter:
    known = set(known)
    return Counter(t for row in tags for t in row if t not in known)


def check_tags(ds: TaggedDataset, label_names: list[str]) -> None:
    """Refuse data whose tags the model cannot predict (unlabelled data always passes)."""
    if ds.tags is None:
        return
    bad = _unknown(ds.tags, label_names)
    if bad:
        shown = ", ".join(f"{t} ({bad[t]})" for t in sorted(bad))
        raise DataError(
            f"{ds.source or 'the data'} has tags the model does not know: {shown}",
            f"the model's tags are {', '.join(label_names)}",
            "fine-tune a model for these tags (cahp-edge finetune --task token-classification) "
            "or map them to the model's tags",
        )


def align(tokenizer, words: list[list[str]], tags: list[list[str]] | None, label2id: dict[str, int],
          max_length: int = 128) -> dict:
    """Tokenize pre-split words; lists per row: model inputs, ``labels`` (tag id on each word's first
    sub-token, -100 elsewhere and everywhere for unlabelled rows), ``word_ids`` (None for special tokens)
    and ``first`` (True on each word's first sub-token)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer",
                         "word alignment needs word_ids(), which only fast tokenizers give",
                         "save the model with a tokenizer.json (a fast tokenizer)")
    if tags is not None:
        bad = _unknown(tags, label2id)
        if bad:
            raise DataError(f"tags {', '.join(sorted(bad))} are not among the labels", "",
                            "check the data's tags against the model (check_tags)")
    # a word costs at least one token: words past max_length could never fit, so skip tokenizing them
    capped = [w[:max_length] for w in words]
    enc = tokenizer(capped, is_split_into_words=True, truncation=True, max_length=max_length)
    out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    out.update(labels=[], word_ids=[], first=[])
    for i in range(len(words)):
        wids = enc.word_ids(i)
        first = [w is not None and (j == 0 or wids[j - 1] != w) for j, w in enumerate(wids)]
        labels = [IGNORE] * len(wids)
        if tags is not None:
            labels = [label2id[tags[i][w]] if f else IGNORE for w, f in zip(wids, first, strict=True)]
        out["labels"].append(labels)
        out["word_ids"].append(wids)
        out["first"].append(first)
    return out


def encode_tagged(tokenizer, ds: TaggedDataset, label2id: dict[str, int], max_length: int = 128,
                  batch_size: int = 32, sort: bool = True) -> list[dict]:
    """Tokenize once; length-sorted batches padded per batch. Besides the model inputs each batch has
    ``labels`` (padded with -100), ``first`` (padded with False), ``word_ids`` (-1 for special tokens and
    padding), ``n_words`` (words in the row, truncated ones included) and ``index`` (row numbers in ds)."""
    import torch

    enc = align(tokenizer, ds.words, ds.tags, label2id, max_length)
    n = len(ds)
    order = sorted(range(n), key=lambda i: len(enc["input_ids"][i])) if sort else list(range(n))
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    left = getattr(tokenizer, "padding_side", "right") == "left"
    batches = []
    for s in range(0, n, batch_size):
        idx = order[s : s + batch_size]
        b = dict(tokenizer.pad({k: [enc[k][i] for i in idx] for k in keys}, return_tensors="pt"))
        width = b["input_ids"].shape[1]

        def pad(rows, value, left=left, width=width):
            return [[value] * (width - len(r)) + r if left else r + [value] * (width - len(r)) for r in rows]

        b["labels"] = torch.tensor(pad([enc["labels"][i] for i in idx], IGNORE))  # (B, T)
        b["first"] = torch.tensor(pad([enc["first"][i] for i in idx], False))  # (B, T)
        wids = [[-1 if w is None else w for w in enc["word_ids"][i]] for i in idx]
        b["word_ids"] = torch.tensor(pad(wids, -1))  # (B, T)
        b["n_words"] = torch.tensor([len(ds.words[i]) for i in idx])
        b["index"] = torch.tensor(idx)
        batches.append(b)
    return batches


def eval_rows(ds: TaggedDataset) -> list[dict]:
    """The device runner's token-classification eval rows (eval.jsonl): words and their gold tags."""
    return [{"tokens": w, "tags": t} for w, t in zip(ds.words, ds.tags or [], strict=True)]
