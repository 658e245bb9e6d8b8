"""Tokenize a :class:`TextDataset` once into length-sorted batches, each padded to its own longest row.

    batches = encode(tokenizer, ds, max_length=128)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cahp_edge.data.dataset import TextDataset


def encode(
    tokenizer, ds: TextDataset, max_length: int = 128, batch_size: int = 64, sort: bool = True
) -> list[dict]:
    """Tokenize once; length-sorted batches padded per batch. Each batch has ``labels`` and ``index``
    (row numbers in ``ds``) besides the model inputs."""
    import torch

    enc = tokenizer(ds.texts, ds.pairs, truncation=True, max_length=max_length)
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
