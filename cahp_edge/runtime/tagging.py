"""Token classification on the device: per-word tags for words given (eval), entity spans for raw text.

Words are tokenized pre-split (``is_pretokenized``), and each word's tag is the argmax at its first
sub-token, exactly as the model was trained and as cahp_edge.model.tagging scores it on the host. The
runner returns the predicted tags; entity F1 is computed from them on the host with seqeval
(cahp_edge.targets.validate), so the device needs nothing beyond onnxruntime, numpy and tokenizers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import RunnerError
from .tokenize import CHARS_PER_TOKEN_CAP, Encoded, length_sorted_batches


def load_tagged_eval(path: Path, tag_names: list[str], limit: int | None = None):
    """(words, gold tags) per sentence from eval.jsonl rows ``{"tokens": [...], "tags": [...]}``."""
    words, gold = [], []
    known = set(tag_names)
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            toks, tags = [str(t) for t in rec["tokens"]], [str(t) for t in rec["tags"]]
        except (ValueError, KeyError, TypeError) as e:
            raise RunnerError("data", f"{path}:{n} is not a tagged row", str(e)[:100],
                              'write {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]} per line'
                              ) from None
        unknown = sorted(set(tags) - known)
        if len(toks) != len(tags) or unknown:
            why = f"tags {unknown} are not the model's" if unknown else \
                f"{len(toks)} tokens, {len(tags)} tags"
            raise RunnerError("data", f"{path}:{n}: bad tagged row", why,
                              "give one of the model's tags per token")
        words.append(toks)
        gold.append(tags)
        if limit and len(words) >= limit:
            break
    if not words:
        raise RunnerError("data", f"eval data {path} is empty", "", "pass a file with at least one sentence")
    return words, gold


def predict_word_tags(run, tok, words: list[list[str]], tag_names: list[str], pad_id: int,
                      batch_size: int) -> list[list[str]]:
    """Each word's tag (argmax at its first sub-token); words cut by truncation are "O" (as on the host).
    ``run(ids, mask, types)`` returns the graph's (B, T, C) logits."""
    cap = CHARS_PER_TOKEN_CAP
    encs = tok.encode_batch([[w[:cap] for w in ws] for ws in words], is_pretokenized=True)
    enc = Encoded([e.ids for e in encs], [e.type_ids for e in encs], pad_id)
    out: list[list[str]] = [["O"] * len(ws) for ws in words]
    for idx, ids, mask, types in length_sorted_batches(enc, batch_size):
        best = run(ids, mask, types).argmax(-1)  # (B, T)
        for row, i in enumerate(idx):
            seen = set()
            for j, w in enumerate(encs[i].word_ids):
                if w is not None and w not in seen:
                    seen.add(w)
                    out[i][w] = tag_names[int(best[row, j])]
    return out


def tag_accuracy(gold: list[list[str]], pred: list[list[str]]) -> float:
    pairs = [(g, p) for gs, ps in zip(gold, pred, strict=True) for g, p in zip(gs, ps, strict=True)]
    return float(np.mean([g == p for g, p in pairs])) if pairs else 0.0
