"""Tokenize with `tokenizers` only, and batch by length so each batch pads to its own longest row.

Sorting by length matters most under emulation (about 65x slower than native): padding every row to
the maximum wastes most of the work on short sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import RunnerError


@dataclass
class Encoded:
    ids: list[list[int]]
    type_ids: list[list[int]]
    pad_id: int


def load_tokenizer(path: Path, max_length: int):
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises plain Exception subclasses for bad files
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunnerError("package", f"cannot load tokenizer {path}", why,
                          "copy tokenizer.json from the exported model again") from None
    tok.no_padding()  # we pad per batch ourselves
    tok.enable_truncation(max_length=max_length)
    return tok


def pad_id_of(tok, configured: int | None) -> int:
    if configured is not None:
        return configured
    for t in ("[PAD]", "<pad>", "<|pad|>"):
        i = tok.token_to_id(t)
        if i is not None:
            return i
    return 0


CHARS_PER_TOKEN_CAP = 128  # no WordPiece/BPE token is longer; the same cap as cahp_edge.data.encode


def encode(tok, texts: list[str], pairs: list[str] | None, pad_id: int) -> Encoded:
    # cut huge rows before tokenizing (the tokens kept are the same): a multi-MB row costs no GBs
    cap = CHARS_PER_TOKEN_CAP * int((tok.truncation or {}).get("max_length") or 512)
    texts = [t[:cap] for t in texts]
    pairs = None if pairs is None else [t[:cap] for t in pairs]
    enc = tok.encode_batch(list(zip(texts, pairs, strict=True)) if pairs is not None else texts)
    return Encoded([e.ids for e in enc], [e.type_ids for e in enc], pad_id)


def length_sorted_batches(enc: Encoded, batch_size: int):
    """Yield (indices, input_ids, attention_mask, token_type_ids), each (B, T) int64, T = batch max."""
    order = sorted(range(len(enc.ids)), key=lambda i: (len(enc.ids[i]), i))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        t = max(len(enc.ids[i]) for i in idx)
        ids = np.full((len(idx), t), enc.pad_id, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(idx), t), dtype=np.int64)  # (B, T)
        types = np.zeros((len(idx), t), dtype=np.int64)  # (B, T)
        for row, i in enumerate(idx):
            n = len(enc.ids[i])
            ids[row, :n] = enc.ids[i]
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids[i]
        yield idx, ids, mask, types


def synthetic_batch(tok, batch: int, seq_len: int, seed: int = 0):
    """A fixed (batch, seq_len) input of real-looking token ids for latency runs (no padding)."""
    rng = np.random.default_rng(seed)
    vocab = max(tok.get_vocab_size(), 2)
    lo = min(1000, vocab // 2)  # skip the special / unused ids at the start of BERT-style vocabularies
    ids = rng.integers(lo, vocab, size=(batch, seq_len), dtype=np.int64)  # (B, T)
    specials = tok.encode("").ids  # e.g. [CLS] [SEP]: keep the model's framing
    if len(specials) >= 2 and seq_len >= 2:
        ids[:, 0], ids[:, -1] = specials[0], specials[-1]
    return ids, np.ones_like(ids), np.zeros_like(ids)
