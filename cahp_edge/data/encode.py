"""Tokenize a :class:`TextDataset` once into length-sorted batches, each padded to its own longest row.

    batches = encode(tokenizer, ds, max_length=128)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cahp_edge.data.dataset import TextDataset


CHARS_PER_TOKEN_CAP = 128  # no WordPiece/BPE token is longer (WordPiece gives up at 100 characters)


def cap_chars(texts: list[str], max_length: int) -> list[str]:
    """Cut each text to what ``max_length`` tokens can cover before tokenizing: a multi-megabyte row is
    never tokenized in full only to be truncated (the tokens kept are the same)."""
    cap = max_length * CHARS_PER_TOKEN_CAP
    return [t if len(t) <= cap else t[:cap] for t in texts]


def encode(
    tokenizer, ds: TextDataset, max_length: int = 128, batch_size: int = 64, sort: bool = True
) -> list[dict]:
    """Tokenize once; length-sorted batches padded per batch. Each batch has ``labels`` and ``index``
    (row numbers in ``ds``) besides the model inputs."""
    import torch

    texts = cap_chars(ds.texts, max_length)
    pairs = None if ds.pairs is None else cap_chars(ds.pairs, max_length)
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    n = len(ds)
    order = sorted(range(n), key=lambda i: len(enc["input_ids"][i])) if sort else list(range(n))
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    batches = []
    for s in range(0, n, batch_size):
        idx = order[s : s + batch_size]
        b = tokenizer.pad({k: [enc[k][i] for i in idx] for k in keys}, return_tensors="pt")
        b = dict(b)
        b["labels"] = torch.tensor([ds.labels[i] for i in idx])
        b["index"] = torch.tensor(idx)
        batches.append(b)
    return batches
