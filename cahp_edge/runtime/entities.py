"""Entity spans from a token-classification model's per-token probabilities (device side, numpy only).

    spans = decode_entities(text, enc.offsets, enc.word_ids, tag_names, probs)   # probs (T, C)
    # [{"entity": "PER", "start": 0, "end": 8, "text": "Johanson", "score": 0.97}, ...]
"""

from __future__ import annotations

import numpy as np


def words_of(offsets: list[tuple[int, int]], word_ids: list[int | None]) -> list[tuple[int, int, int]]:
    """(first token index, start char, end char) per word, in text order; sub-words extend the end."""
    words: dict[int, list[int]] = {}
    for j, w in enumerate(word_ids):
        if w is None:
            continue
        if w not in words:
            words[w] = [j, offsets[j][0], offsets[j][1]]
        else:
            words[w][2] = max(words[w][2], offsets[j][1])
    return [tuple(v) for v in words.values()]  # first-seen order is token order


def _split(tag: str) -> tuple[str, str]:
    """(prefix, type); a tag without B-/I- (IO scheme) continues like I-."""
    if tag == "O":
        return "O", ""
    if tag[:2] in ("B-", "I-"):
        return tag[0], tag[2:]
    return "I", tag


def decode_entities(text: str, offsets: list[tuple[int, int]], word_ids: list[int | None],
                    tag_names: list[str], probs: np.ndarray) -> list[dict]:
    """Aggregate word tags into entity spans with character offsets into ``text``.

    Each word's tag and confidence come from its first sub-token (argmax and max of ``probs`` (T, C));
    its later sub-tokens only extend its end. Words are joined as conlleval does: B-X starts a span;
    I-X continues a span of type X only right after a B-X or I-X word, and otherwise starts a new span
    (an I- without a B- is kept, not dropped); B-X right after a span of X starts a second span
    (back-to-back entities stay two); O ends a span, and so does a change of type. A span's score is
    the mean of its words' first-sub-token probabilities.
    """
    probs = np.asarray(probs)
    if not (len(offsets) == len(word_ids) == probs.shape[0]) or probs.shape[1] != len(tag_names):
        raise ValueError(f"{len(offsets)} offsets, {len(word_ids)} word ids and probs {probs.shape} "
                         f"for {len(tag_names)} tags do not match")
    spans: list[dict] = []
    cur: dict | None = None  # the open span: entity, start, end, word scores
    for j, start, end in words_of(offsets, word_ids):
        c = int(np.argmax(probs[j]))
        prefix, kind = _split(tag_names[c])
        if prefix == "I" and cur is not None and cur["entity"] == kind:
            cur["end"] = end
            cur["scores"].append(float(probs[j, c]))
            continue
        if cur is not None:
            spans.append(cur)
        cur = None if prefix == "O" else {"entity": kind, "start": start, "end": end,
                                          "scores": [float(probs[j, c])]}
    if cur is not None:
        spans.append(cur)
    return [{"entity": s["entity"], "start": s["start"], "end": s["end"], "text": text[s["start"]:s["end"]],
             "score": sum(s["scores"]) / len(s["scores"])} for s in spans]
