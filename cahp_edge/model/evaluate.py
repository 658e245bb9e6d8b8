"""Logits and accuracy of a (possibly head-masked) PyTorch classifier on a :mod:`cahp_edge.data` dataset.

    batches = encode(tokenizer, ds, max_length=128)      # cahp_edge.data.encode: tokenize once
    acc = evaluate_accuracy(model, tokenizer, batches=batches, mask=values)  # (L, H) head multipliers

Used by the CAHP sweep, training and validation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cahp_edge.data.encode import encode
from cahp_edge.errors import DataError

if TYPE_CHECKING:
    from cahp_edge.data.dataset import TextDataset


def predict_logits(model, batches: list[dict], mask=None):
    """Logits (N, C) in dataset row order. ``mask``: a HeadMask, or a (L, H) tensor of head multipliers."""
    import contextlib

    import torch

    hm = mask
    if mask is not None and not hasattr(mask, "attach"):
        from cahp_edge.arch import get_adapter
        from cahp_edge.model.mask import HeadMask

        hm = HeadMask(model, get_adapter(model.config), values=mask)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out, idx = [], []
    ctx = hm if hm is not None and not getattr(hm, "_handles", None) else contextlib.nullcontext()
    try:
        with torch.inference_mode(), ctx:
            for b in batches:
                inputs = {k: v.to(dev) for k, v in b.items() if k not in ("labels", "index")}
                out.append(model(**inputs).logits.float().cpu())
                idx.append(b["index"])
    finally:
        model.train(was_training)
    logits, idx = torch.cat(out), torch.cat(idx)
    res = torch.empty_like(logits)
    res[idx] = logits
    return res


def evaluate_accuracy(
    model,
    tokenizer,
    ds: TextDataset | None = None,
    batch_size: int = 64,
    max_length: int = 128,
    mask=None,
    batches: list[dict] | None = None,
) -> float:
    """Accuracy of ``model`` on ``ds`` (labels must already be the model's ids: see align_labels).

    Pass pre-encoded ``batches`` (from :func:`encode`) to skip tokenizing in a sweep."""
    import torch

    if batches is None:
        if ds is None:
            raise ValueError("pass ds or batches")
        if ds.labels and max(ds.labels) >= model.config.num_labels:
            raise DataError(
                f"{ds.source} has {ds.num_labels} labels but the model has {model.config.num_labels}",
                "",
                "align the data with the model's labels (align_labels)",
            )
        batches = encode(tokenizer, ds, max_length, batch_size)
    if not batches:
        return float("nan")
    logits = predict_logits(model, batches, mask)
    labels = torch.empty(len(logits), dtype=torch.long)
    for b in batches:
        labels[b["index"]] = b["labels"]
    return float((logits.argmax(-1) == labels).float().mean())


def pseudo_label(
    model, tokenizer, ds: TextDataset, max_length: int = 128, batch_size: int = 64
) -> TextDataset:
    """Unlabelled rows labelled with the model's own predictions (names in id order).

    For knee selection from held-out text without labels: the selection accuracy then measures how
    often the pruned model agrees with the dense one, which is what pruning must preserve.
    """
    from cahp_edge.data.dataset import TextDataset

    names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    # encode() needs a label per row; the -1 placeholders are never read, only the logits are
    logits = predict_logits(model, encode(tokenizer, ds, max_length=max_length, batch_size=batch_size))
    preds = logits.argmax(-1).tolist()  # (N,) model ids
    return TextDataset(list(ds.texts), None if ds.pairs is None else list(ds.pairs), preds, names,
                       ds.source, ds.split)


def embed_texts(model, tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 64):
    """(N, D) embeddings of ``texts`` from a sentence-embedding model (cahp_edge.model.embedder)."""
    from cahp_edge.data.dataset import TextDataset

    ds = TextDataset(list(texts), None, [-1] * len(texts), [])
    return predict_logits(model, encode(tokenizer, ds, max_length=max_length, batch_size=batch_size))


def sts_spearman(model, tokenizer, ds: TextDataset, max_length: int = 128, batch_size: int = 64) -> float:
    """Spearman correlation (scipy) of cosine(text, pair) with the gold scores: the STS-B metric.
    Each side is embedded on its own, as the device runner does."""
    import torch.nn.functional as F
    from scipy.stats import spearmanr

    if ds.pairs is None or ds.scores is None:
        raise DataError(f"{ds.source} has no graded pairs", "STS scoring needs text, text_pair and score",
                        "pass a file with sentence1, sentence2 and score columns")
    a = embed_texts(model, tokenizer, ds.texts, max_length, batch_size)
    b = embed_texts(model, tokenizer, ds.pairs, max_length, batch_size)
    cos = F.cosine_similarity(a.double(), b.double(), dim=-1)
    return float(spearmanr(cos.numpy(), ds.scores).statistic)


def embedding_agreement(model, dense, tokenizer, texts: list[str], max_length: int = 128) -> float:
    """Mean cosine between ``model``'s and the ``dense`` model's embedding of each text."""
    import torch.nn.functional as F

    a = embed_texts(model, tokenizer, texts, max_length)
    b = embed_texts(dense, tokenizer, texts, max_length)
    return float(F.cosine_similarity(a.double(), b.double(), dim=-1).mean())
