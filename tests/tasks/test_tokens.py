"""Token classification (NER): CoNLL reading, sub-token alignment, entity scores, span decoding and
fine-tuning, on hand-checked cases with a hand-written WordPiece vocabulary and a tiny BERT."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cahp_edge.data.tagged import (
    TaggedDataset,
    align,
    check_tags,
    encode_tagged,
    read_conll,
    read_plain_words,
)
from cahp_edge.errors import DataError
from cahp_edge.model.tagging import entity_scores, predict_tags, tag_agreement
from cahp_edge.runtime.entities import decode_entities, words_of
from tests.helpers.tiny import TINY_CONFIGS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PER, LAST = ["john", "mary", "anna", "peter"], ["smith", "jones"]
LOC, ORG = ["paris", "london"], ["acme", "globex"]
VOCAB = [*SPECIALS, "johan", "##son", "visited", "works", "for", "in", "and", "left", ".",
         *PER, *LAST, *LOC, *ORG]
NAMES = ["O", "B-LOC", "I-LOC", "B-ORG", "B-PER", "I-PER"]  # TaggedDataset.tag_names() order
L2I = {n: i for i, n in enumerate(NAMES)}


def wordpiece_tokenizer():
    """BERT-style WordPiece over VOCAB: "Johanson" -> johan ##son, as MiniLM's vocabulary splits it."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                     special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def write(p: Path, text: str) -> Path:
    p.write_text(text, encoding="utf-8")
    return p


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


-DOCSTART- -X- -X- O
LONDON NNP B-NP B-LOC
"""


# --- reading -----------------------------------------------------------------------------------------

def test_read_conll_skips_docstart_and_splits_sentences(tmp_path):
    ds = read_conll(write(tmp_path / "a.txt", CONLL), "dev")
    assert ds.words == [["EU", "rejects"], ["Peter", "Blackburn"], ["LONDON"]]
    assert ds.tags == [["B-ORG", "O"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert ds.labelled and len(ds) == 3 and ds.split == "dev"
    assert ds.tag_names() == ["O", "B-LOC", "B-ORG", "B-PER", "I-PER"]
    sub = ds.subset([2, 0])
    assert sub.words == [["LONDON"], ["EU", "rejects"]] and sub.tags == [["B-LOC"], ["B-ORG", "O"]]


@pytest.mark.parametrize("text, needle", [
    ("EU NNP B-ORG\nrejects VBZ X-MISC\n", ":2: tag 'X-MISC' is not IOB2"),
    ("EU NNP B-\n", ":1: tag 'B-' is not IOB2"),
    ("EU B-ORG\n\nrejects\n", ":3 has 1 column(s)"),
    ("", "is empty"),
    ("-DOCSTART- -X- -X- O\n\n\n", "has no sentences"),
])
def test_read_conll_refuses_bad_files(tmp_path, text, needle):
    with pytest.raises(DataError, match="Fix: ") as e:
        read_conll(write(tmp_path / "bad.txt", text))
    assert needle in str(e.value) and "bad.txt" in str(e.value)


def test_read_unlabelled_words(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_conll(tmp_path / "missing.txt")
    ds = read_conll(write(tmp_path / "w.txt", "EU\nrejects\n\nPeter\n"))
    assert ds.words == [["EU", "rejects"], ["Peter"]] and ds.tags is None and not ds.labelled
    plain = read_plain_words(write(tmp_path / "p.txt", "EU rejects  German call\n\n  Peter left .\n"))
    assert plain.words == [["EU", "rejects", "German", "call"], ["Peter", "left", "."]] and plain.tags is None
    with pytest.raises(DataError, match="has no tags"):
        plain.tag_names()


def test_check_tags_names_unknown_tags_with_counts():
    ds = TaggedDataset([["a", "b", "c", "d"]], [["B-FOO", "I-FOO", "B-FOO", "O"]], "dev.txt")
    check_tags(ds, ["O", "B-FOO", "I-FOO"])
    check_tags(TaggedDataset([["a"]], None), ["O"])  # unlabelled text has nothing to check
    with pytest.raises(DataError) as e:
        check_tags(ds, NAMES)
    msg = str(e.value)
    assert "dev.txt has tags the model does not know: B-FOO (2), I-FOO (1)" in msg and "fine-tune" in msg


# --- alignment ---------------------------------------------------------------------------------------

@pytest.fixture(params=["wordpiece", "minilm"])
def tokenizer(request):
    if request.param == "wordpiece":
        return wordpiece_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(request.getfixturevalue("minilm_path")))


def test_align_labels_first_subtokens_only(tokenizer):
    enc = align(tokenizer, [["Johanson", "visited", "Paris"]], [["B-PER", "O", "B-LOC"]], L2I)
    assert tokenizer.convert_ids_to_tokens(enc["input_ids"][0]) == ["[CLS]", "johan", "##son", "visited",
                                                                    "paris", "[SEP]"]
    assert enc["labels"] == [[-100, L2I["B-PER"], -100, L2I["O"], L2I["B-LOC"], -100]]
    assert enc["word_ids"] == [[None, 0, 0, 1, 2, None]]
    assert enc["first"] == [[False, True, False, True, True, False]]
    cut = align(tokenizer, [["Johanson", "visited", "Paris"]], [["B-PER", "O", "B-LOC"]], L2I, max_length=4)
    assert cut["labels"] == [[-100, L2I["B-PER"], -100, -100]]  # the truncated words get no label
    free = align(tokenizer, [["Johanson", "visited"]], None, L2I)
    assert free["labels"] == [[-100] * 5] and free["first"] == [[False, True, False, True, False]]


def test_encode_tagged_pads_and_keeps_row_numbers():
    tok = wordpiece_tokenizer()
    ds = TaggedDataset([["Johanson", "visited", "Paris"], ["Anna"]], [["B-PER", "O", "B-LOC"], ["B-PER"]])
    (b,) = encode_tagged(tok, ds, L2I, batch_size=4)
    assert b["index"].tolist() == [1, 0]  # shortest first
    assert b["labels"].tolist() == [[-100, 4, -100, -100, -100, -100], [-100, 4, -100, 0, 1, -100]]
    assert b["first"][0].tolist() == [False, True, False, False, False, False]
    assert b["word_ids"].tolist() == [[-1, 0, -1, -1, -1, -1], [-1, 0, 0, 1, 2, -1]]
    assert b["n_words"].tolist() == [1, 3] and b["attention_mask"].sum().item() == 9
    with pytest.raises(DataError, match="B-FOO"):
        encode_tagged(tok, TaggedDataset([["Anna"]], [["B-FOO"]]), L2I)


# --- predictions and scores --------------------------------------------------------------------------

class TokenTable(torch.nn.Module):
    """A stand-in tagger: each token id's logits are one-hot on a fixed tag (ids not listed: O)."""

    def __init__(self, tok, table: dict[str, str]):
        super().__init__()
        self.ids = torch.zeros(len(VOCAB), dtype=torch.long)
        for word, tag in table.items():
            self.ids[tok.convert_tokens_to_ids(word)] = L2I[tag]
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, **_):
        return SimpleNamespace(logits=torch.nn.functional.one_hot(self.ids[input_ids], len(NAMES)).float())


def test_predict_tags_reads_first_subtokens_in_row_order():
    tok = wordpiece_tokenizer()
    # ##son says I-LOC: it must be ignored, the word's tag comes from its first sub-token (johan)
    model = TokenTable(tok, {"johan": "B-PER", "##son": "I-LOC", "paris": "B-LOC", "anna": "B-PER"})
    ds = TaggedDataset([["Johanson", "visited", "Paris"], ["Anna", "left"]], None)
    want = [["B-PER", "O", "B-LOC"], ["B-PER", "O"]]
    for sort in (True, False):
        assert predict_tags(model, encode_tagged(tok, ds, L2I, sort=sort, batch_size=1), NAMES) == want
    cut = encode_tagged(tok, ds, L2I, max_length=4)  # [CLS] johan ##son [SEP]: visited, Paris are cut
    assert predict_tags(model, cut, {str(i): n for i, n in enumerate(NAMES)}) == [["B-PER", "O", "O"],
                                                                                  ["B-PER", "O"]]


def test_entity_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]  # PER, LOC, ORG
    pred = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-MISC"]]  # PER, LOC right; ORG missed; MISC wrong
    s = entity_scores(gold, pred)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3) and s["support"] == 3
    assert entity_scores([["B-PER", "I-PER"]], [["B-PER", "O"]])["f1"] == 0  # a span must match exactly
    assert entity_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]])["f1"] == 1  # conlleval: I- opens
    with pytest.raises(ValueError, match="row 1: 2 gold tags but 1 predicted"):
        entity_scores(gold, [gold[0], ["O"]])
    assert tag_agreement([["O", "B-PER"], ["O"]], [["O", "B-LOC"], ["O"]]) == pytest.approx(2 / 3)


# --- decoding spans (device side) --------------------------------------------------------------------

def one_hot_probs(tags: list[str | None], p: list[float]) -> np.ndarray:
    """(T, C): probability p[t] on tags[t] (O for special tokens), the rest spread evenly."""
    out = np.zeros((len(tags), len(NAMES)))
    for t, (tag, q) in enumerate(zip(tags, p, strict=True)):
        out[t] = (1 - q) / (len(NAMES) - 1)
        out[t, L2I[tag or "O"]] = q
    return out


def decode(text: str, words: list[str], tags: list[str], p: list[float]):
    """One token per word, words separated by single spaces, [CLS] and [SEP] around them."""
    offsets, start = [(0, 0)], 0
    for w in words:
        offsets.append((start, start + len(w)))
        start += len(w) + 1
    wids = [None, *range(len(words)), None]
    return decode_entities(text, [*offsets, (0, 0)], wids, NAMES, one_hot_probs([None, *tags, None],
                                                                                  [0.9, *p, 0.9]))


def test_decode_entities_subwords_and_offsets():
    text = "Johanson visited Paris"
    offsets = [(0, 0), (0, 5), (5, 8), (9, 16), (17, 22), (0, 0)]
    wids = [None, 0, 0, 1, 2, None]
    # ##son's own argmax (I-LOC) is ignored: the first sub-token decides the word
    probs = one_hot_probs([None, "B-PER", "I-LOC", "O", "B-LOC", None], [0.9, 0.8, 0.7, 0.6, 0.6, 0.9])
    spans = decode_entities(text, offsets, wids, NAMES, probs)
    assert spans == [{"entity": "PER", "start": 0, "end": 8, "text": "Johanson", "score": pytest.approx(0.8)},
                     {"entity": "LOC", "start": 17, "end": 22, "text": "Paris", "score": pytest.approx(0.6)}]
    assert words_of(offsets, wids) == [(1, 0, 8), (3, 9, 16), (4, 17, 22)]


@pytest.mark.parametrize("tags, want", [
    (["I-PER", "I-PER", "O"], [("PER", "Anna Smith", 0.7)]),  # I- without B- starts a span
    (["B-PER", "B-PER", "O"], [("PER", "Anna", 0.6), ("PER", "Smith", 0.8)]),  # back to back: two
    (["B-PER", "I-LOC", "O"], [("PER", "Anna", 0.6), ("LOC", "Smith", 0.8)]),  # a type change ends it
    (["B-PER", "O", "I-PER"], [("PER", "Anna", 0.6), ("PER", "left", 0.5)]),  # O ends it
    (["B-PER", "I-PER", "I-PER"], [("PER", "Anna Smith left", 0.633333)]),
])
def test_decode_entities_bio_rules(tags, want):
    text = "Anna Smith left"
    spans = decode(text, text.split(), tags, [0.6, 0.8, 0.5])
    assert [(s["entity"], s["text"], round(s["score"], 6)) for s in spans] == want
    assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)


def test_decode_entities_offsets_from_the_tokenizer():
    tok = wordpiece_tokenizer()
    text = "  Johanson visited  PARIS ."
    enc = tok(text, return_offsets_mapping=True)
    tags = [None, "B-PER", "I-PER", "O", "B-LOC", "O", None]  # [CLS] johan ##son visited paris . [SEP]
    probs = one_hot_probs(tags, [0.9] * 7)
    spans = decode_entities(text, enc["offset_mapping"], enc.word_ids(), NAMES, probs)
    assert [(s["entity"], s["start"], s["end"], s["text"]) for s in spans] == [("PER", 2, 10, "Johanson"),
                                                                               ("LOC", 20, 25, "PARIS")]
    with pytest.raises(ValueError, match="do not match"):
        decode_entities(text, enc["offset_mapping"], enc.word_ids(), NAMES[:3], probs)


# --- fine-tuning -------------------------------------------------------------------------------------

def toy_conll(n: int, seed: int, org_tag: str = "B-ORG") -> str:
    """Sentences like "john smith works for acme ." / "mary visited paris ." with their IOB2 tags."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2:
            rows = [(rng.choice(PER), "B-PER"), (rng.choice(LAST), "I-PER"), ("works", "O"), ("for", "O"),
                    (rng.choice(ORG), org_tag)]
        else:
            rows = [(rng.choice(PER), "B-PER"), ("visited", "O"), (rng.choice(LOC), "B-LOC")]
        out.append("".join(f"{w} NN O {t}\n" for w, t in [*rows, (".", "O")]))
    return "-DOCSTART- -X- -X- O\n\n" + "\n".join(out)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """A tiny base encoder (BertModel, no head) + the WordPiece tokenizer, like all-MiniLM-L6-v2 in small."""
    from transformers import BertConfig, BertModel

    d = tmp_path_factory.mktemp("base")
    kw = {k: v for k, v in TINY_CONFIGS["bert"].items() if k != "model_type"}
    torch.manual_seed(0)
    BertModel(BertConfig(**{**kw, "vocab_size": len(VOCAB)})).save_pretrained(str(d))
    wordpiece_tokenizer().save_pretrained(str(d))
    return d


FAST = dict(epochs=4, lr=5e-3, batch_size=8, max_length=24, warmup_ratio=0.0, cpu=True)


def test_finetune_tokens_writes_a_token_classifier(base_dir, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from cahp_edge.tasks import TOKEN_CLASSIFICATION, detect_task
    from cahp_edge.train.finetune import META_FILE
    from cahp_edge.train.loop import TrainConfig
    from cahp_edge.train.tokens import finetune_tokens

    train = write(tmp_path / "train.txt", toy_conll(48, 1))
    dev = write(tmp_path / "dev.txt", toy_conll(16, 2))
    res = finetune_tokens(base_dir, train, tmp_path / "ner", dev, TrainConfig(**FAST))
    assert res.label_names == ["O", "B-LOC", "B-ORG", "B-PER", "I-PER"] and res.train_rows == 48
    assert res.train.steps == 24 and res.scores["support"] == 32  # 16 sentences x (PER + LOC or ORG)
    assert res.f1 > 0.9  # the toy tags follow the words: a working loop learns them in 24 steps
    m = AutoModelForTokenClassification.from_pretrained(str(tmp_path / "ner"))
    assert m.config.id2label == dict(enumerate(res.label_names))
    assert detect_task(tmp_path / "ner") is TOKEN_CLASSIFICATION
    meta = json.loads((tmp_path / "ner" / META_FILE).read_text())
    assert meta["task"] == "token-classification" and meta["eval_f1"] == res.f1
    # the saved folder predicts what the trained model scored
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "ner"))
    ds = read_conll(dev)
    pred = predict_tags(m, encode_tagged(tok, ds, m.config.label2id, 24), m.config.id2label)
    assert entity_scores(ds.tags, pred)["f1"] == pytest.approx(res.f1)


def test_finetune_tokens_refuses_unseen_eval_tags_before_training(base_dir, tmp_path):
    from cahp_edge.train.loop import TrainConfig
    from cahp_edge.train.tokens import finetune_tokens

    train = write(tmp_path / "train.txt", toy_conll(8, 1))
    dev = write(tmp_path / "dev.txt", toy_conll(8, 2, org_tag="B-COMPANY"))
    with pytest.raises(DataError, match=r"dev.txt has tags the model does not know: B-COMPANY \(4\)"):
        finetune_tokens(base_dir, train, tmp_path / "ner", dev, TrainConfig(**FAST))
    assert not (tmp_path / "ner").exists()


def test_cli_finetune_token_classification(base_dir, tmp_path, capsys):
    from cahp_edge.cli import main

    train = write(tmp_path / "train.txt", toy_conll(16, 1))
    dev = write(tmp_path / "dev.txt", toy_conll(8, 2))
    rc = main(["finetune", "--task", "token-classification", "--model", str(base_dir), "--data", str(train),
               "--eval", str(dev), "--out", str(tmp_path / "ner"), "--epochs", "1", "--batch-size", "8",
               "--max-length", "24", "--cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "finetune: 16 sentences x 1 epoch(s), 5 tags" in err and "entity F1 " in err
    assert (tmp_path / "ner" / "model.safetensors").is_file()


# --- real data ---------------------------------------------------------------------------------------

@pytest.mark.realdata
def test_conll2003_valid(shared_data):
    path = shared_data / "conll2003" / "valid.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    ds = read_conll(path, "dev")
    assert len(ds) == 3250 and sum(len(w) for w in ds.words) == 51362
    assert ds.tag_names() == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert ds.words[0] == ["CRICKET", "-", "LEICESTERSHIRE", "TAKE", "OVER", "AT", "TOP", "AFTER", "INNINGS",
                           "VICTORY", "."]
