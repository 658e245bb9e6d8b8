"""A tiny fine-tuned-looking BERT checkpoint + tiny labelled data for end-to-end build tests.

`make_checkpoint(dir)` trains a WordPiece tokenizer (tokenizers' BertWordPieceTokenizer) on the tiny
sentences, wraps it in transformers' BertTokenizerFast, builds a 3-layer 4-head BERT classifier with
labels neg/pos and saves both with save_pretrained. `make_data(dir)` writes train.tsv / dev.tsv.
"""

from __future__ import annotations

import random
from pathlib import Path

POS = ["good", "great", "lovely", "fine", "happy", "superb", "nice", "bright"]
NEG = ["bad", "awful", "poor", "sad", "boring", "ugly", "dull", "broken"]
NOUNS = ["movie", "meal", "room", "book", "song", "game", "trip", "phone"]


def sentences(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        word = rng.choice(POS if label == "pos" else NEG)
        rows.append((f"the {rng.choice(NOUNS)} was {word} and {rng.choice(NOUNS)} too", label))
    return rows


def make_data(d: Path, n_train: int = 48, n_dev: int = 16, labels: tuple[str, ...] = ("neg", "pos")) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train.tsv", n_train, 1), ("dev.tsv", n_dev, 2)):
        rows = [(t, y if y in labels else labels[-1]) for t, y in sentences(n, seed)]
        (d / name).write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    return d


def make_pair_data(d: Path, n_train: int = 48, n_dev: int = 24) -> Path:
    """Sentence-pair train.tsv / dev.tsv (GLUE columns sentence1, sentence2, label): sentence1 carries
    no sentiment and the label follows sentence2, so scoring sentence1 alone gives other predictions."""
    d.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train.tsv", n_train, 3), ("dev.tsv", n_dev, 4)):
        rng = random.Random(seed)
        firsts = [f"the {rng.choice(NOUNS)} and the {rng.choice(NOUNS)}" for _ in range(n)]
        rows = [(a, b, y) for a, (b, y) in zip(firsts, sentences(n, seed + 10), strict=True)]
        body = "".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows)
        (d / name).write_text("sentence1\tsentence2\tlabel\n" + body, encoding="utf-8")
    return d


def make_checkpoint(d: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    d.mkdir(parents=True, exist_ok=True)
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in sentences(200, 7)) + "\n", encoding="utf-8")
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train([str(corpus)], vocab_size=120, min_frequency=1, show_progress=False)
    corpus.unlink()
    tok = BertTokenizerFast(
        tokenizer_object=wp._tokenizer,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=128,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg).eval()
    with torch.no_grad():  # spread the random logits so argmax is not one class for everything
        model.classifier.weight.mul_(20)
    model.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


TINY_CONFIG = """
# sized for a tiny model: every stage runs, nothing takes long
calib_size = 12
select_size = 16
grid_points = 4
recover_epochs = 0.5
batch_size = 8
max_length = 32
compare_dense = true
heads = 7              # a random tiny model has no knee worth finding; the sweep still runs in prune tests
allow_weak_model = true  # and it is no better than the majority class: the build's gate would stop it

[benchmark]
runs = 5
warmup = 1
seq_len = 16
"""
