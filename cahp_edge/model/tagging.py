"""Word-level tag predictions and entity scores for token-classification models.

    pred = predict_tags(model, encode_tagged(tok, ds, label2id), model.config.id2label)
    entity_scores(ds.tags, pred)        # {"f1", "precision", "recall", "support"}, seqeval (conlleval)
"""

from __future__ import annotations

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def predict_tags(model, batches: list[dict], id2label: dict | list[str]) -> list[list[str]]:
    """Argmax tag at each word's first sub-token, per row in dataset order (batches from encode_tagged).
    ``id2label``: a config's (int or str keys) or the tag names in id order."""
    import torch

    pairs = enumerate(id2label) if isinstance(id2label, list) else id2label.items()
    names = {int(k): v for k, v in pairs}
    device = next(model.parameters()).device
    rows: dict[int, list[str]] = {}
    model.eval()
    with torch.no_grad():
        for b in batches:
            logits = model(**{k: b[k].to(device) for k in MODEL_INPUTS if k in b}).logits  # (B, T, C)
            best = logits.argmax(-1).cpu()  # (B, T)
            for r, i in enumerate(b["index"].tolist()):
                # a word cut by truncation (or one that tokenizes to nothing) has no sub-token to read:
                # it is predicted "O", so every row keeps exactly as many tags as it has words
                tags = ["O"] * int(b["n_words"][r])
                for j in b["first"][r].nonzero().flatten().tolist():
                    tags[int(b["word_ids"][r, j])] = names[int(best[r, j])]
                rows[i] = tags
    return [rows[i] for i in range(len(rows))]


def _check_rows(gold: list[list[str]], pred: list[list[str]]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold rows but {len(pred)} predicted rows")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"row {i}: {len(g)} gold tags but {len(p)} predicted tags")


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Micro entity-level F1, precision and recall (fractions 0..1) as conlleval counts them (seqeval's
    default mode: an I- without a B- starts an entity); ``support`` is the number of gold entities."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    _check_rows(gold, pred)
    kw = dict(zero_division=0)  # no entities at all scores 0, without seqeval's warning
    return {
        "f1": float(f1_score(gold, pred, **kw)),
        "precision": float(precision_score(gold, pred, **kw)),
        "recall": float(recall_score(gold, pred, **kw)),
        "support": len(get_entities(gold)),
    }


def tag_agreement(a: list[list[str]], b: list[list[str]]) -> float:
    """Fraction of words with the same tag in ``a`` and ``b`` (1.0 when there are no words)."""
    _check_rows(a, b)
    total = sum(len(r) for r in a)
    same = sum(x == y for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))
    return same / total if total else 1.0
