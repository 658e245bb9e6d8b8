"""Training loop, `finetune` and `recover` on tiny in-process models (CPU, seconds)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cahp_edge.data import TextDataset, align_labels
from cahp_edge.errors import DataError, ModelError, OutputError
from cahp_edge.model.evaluate import evaluate_accuracy
from cahp_edge.train.loop import TrainConfig, train_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POS = ["good", "great", "lovely", "fine", "superb", "nice"]
NEG = ["bad", "awful", "poor", "boring", "ugly", "dull"]
NOUNS = ["movie", "meal", "room", "book", "song", "game", "trip", "phone", "food"]
WORDS = [*POS, *NEG, *NOUNS, "the", "was", "and", "too", "it", "ok", ",", "."]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=t,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_config(vocab_size: int, labels: list[str] | None = None):
    from transformers import BertConfig

    kw = {}
    if labels:
        kw = dict(
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={v: i for i, v in enumerate(labels)},
        )
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        **kw,
    )


def tiny_classifier(tok, labels: list[str], seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_config(len(tok), labels)).eval()


def sentiment(n: int, seed: int) -> TextDataset:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        texts.append(
            f"the {rng.choice(NOUNS)} was {rng.choice(POS if y else NEG)} and the {rng.choice(NOUNS)} "
            f"{'too' if rng.random() < 0.5 else 'was ok'}"
        )
        labels.append(y)
    return TextDataset(texts, None, labels, ["neg", "pos"], f"synthetic-{seed}", "train")


def write_tsv(ds: TextDataset, path: Path) -> Path:
    rows = "".join(f"{t}\t{ds.label_names[y]}\n" for t, y in zip(ds.texts, ds.labels, strict=True))
    path.write_text("sentence\tlabel\n" + rows, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """A base encoder (BertModel, no classifier) + tokenizer, like all-MiniLM-L6-v2 but tiny."""
    from transformers import BertModel

    d = tmp_path_factory.mktemp("base")
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    BertModel(tiny_config(len(tok))).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


FAST = dict(epochs=5, lr=5e-3, batch_size=16, max_length=24, warmup_ratio=0.0)


def test_training_learns_and_is_deterministic():
    tok = tiny_tokenizer()
    train, dev = sentiment(96, 1), sentiment(40, 2)
    states = []
    for seed in (0, 0, 1):
        m = tiny_classifier(tok, ["neg", "pos"], seed=seed)
        m, res = train_classifier(m, tok, train, TrainConfig(seed=seed, **FAST))
        states.append({k: v.clone() for k, v in m.state_dict().items()})
    assert res.steps == 30 and res.examples == 480 and res.num_processes == 1
    assert evaluate_accuracy(m, tok, dev, max_length=24) >= 0.9
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # same seed: bit-identical
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_fractional_epochs_and_progress():
    tok = tiny_tokenizer()
    seen = []
    _, res = train_classifier(
        tiny_classifier(tok, ["neg", "pos"]),
        tok,
        sentiment(64, 1),
        TrainConfig(epochs=0.5, batch_size=16, max_length=24),
        progress=lambda s, t, loss: seen.append((s, t)),
    )
    assert res.steps == 2 and seen == [(1, 2), (2, 2)]


def test_bad_train_options():
    from cahp_edge.errors import UsageError

    for bad in (dict(epochs=0), dict(lr=-1), dict(batch_size=0), dict(alpha=2.0)):
        with pytest.raises(UsageError):
            TrainConfig(**bad).check()


def test_finetune_end_to_end(base_dir, tmp_path):
    from cahp_edge.model.load import load_model
    from cahp_edge.train.finetune import META_FILE, finetune

    train, dev = sentiment(96, 1), sentiment(40, 2)
    out = tmp_path / "ft"
    res = finetune(
        base_dir,
        write_tsv(train, tmp_path / "train.tsv"),
        out,
        write_tsv(dev, tmp_path / "dev.tsv"),
        TrainConfig(**FAST),
    )
    assert res.accuracy >= 0.9 and res.label_names == ["neg", "pos"] and (out / "model.safetensors").is_file()
    lm = load_model(out, require_classifier=True)
    assert lm.model.config.id2label == {0: "neg", 1: "pos"} and lm.model.config.cahp_input == "single"
    again = evaluate_accuracy(
        lm.model, lm.tokenizer, align_labels(dev, lm.model.config.id2label), max_length=24
    )
    assert again == pytest.approx(res.accuracy)  # the saved model is the evaluated one
    meta = json.loads((out / META_FILE).read_text())
    assert meta["eval_accuracy"] == pytest.approx(res.accuracy) and meta["options"]["seed"] == 0
    assert not list(tmp_path.glob(".ft.*"))  # no temp dirs left behind


def test_finetune_bad_input_leaves_no_output(base_dir, tmp_path):
    from cahp_edge.train.finetune import finetune

    train = write_tsv(sentiment(16, 1), tmp_path / "train.tsv")
    odd = TextDataset(["the movie was good"], None, [0], ["meh"], "odd.tsv", "dev")
    with pytest.raises(DataError, match=r"labels \['meh'\] of odd.tsv are not in the model's label set"):
        finetune(base_dir, train, tmp_path / "o1", odd, TrainConfig(**FAST))
    assert not (tmp_path / "o1").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(OutputError):
        finetune(base_dir, train, tmp_path / "full", None, TrainConfig(**FAST))
    with pytest.raises(ModelError, match="model folder not found"):
        finetune(tmp_path / "nope", train, tmp_path / "o2")


@pytest.fixture(scope="module")
def dense_and_pruned(tmp_path_factory):
    """A trained tiny classifier and its reshaped copy with a zero-head layer, both saved."""
    from cahp_edge.model.load import save_pruned
    from cahp_edge.model.reshape import reshape
    from cahp_edge.plan import HeadPlan

    d = tmp_path_factory.mktemp("rec")
    tok = tiny_tokenizer()
    m, _ = train_classifier(tiny_classifier(tok, ["neg", "pos"]), tok, sentiment(96, 1), TrainConfig(**FAST))
    m.save_pretrained(str(d / "dense"))
    tok.save_pretrained(str(d / "dense"))
    plan = HeadPlan((4, 4, 4), ((0, 2), (), (1, 2, 3)), {"method": "test"})
    save_pruned(reshape(m, plan), plan, d / "pruned", tok, "abc")
    return d / "dense", d / "pruned"


def test_recover_zero_head_layer_with_teacher(dense_and_pruned, tmp_path):
    from cahp_edge.model.load import load_pruned
    from cahp_edge.train.recover import recover_dir

    dense, pruned = dense_and_pruned
    dev = write_tsv(sentiment(40, 2), tmp_path / "dev.tsv")
    res = recover_dir(
        pruned,
        write_tsv(sentiment(96, 3), tmp_path / "train.tsv"),
        tmp_path / "out",
        teacher=dense,
        eval_data=dev,
        cfg=TrainConfig(**FAST, alpha=0.5),
    )
    assert res.heads_per_layer == [2, 0, 3] and res.accuracy_after >= res.accuracy_before - 0.05
    before, after = load_pruned(pruned), load_pruned(tmp_path / "out")
    assert after.heads_per_layer == [2, 0, 3] and after.source_hash == "abc"
    sb, sa = before.model.state_dict(), after.model.state_dict()
    assert sb.keys() == sa.keys() and not all(torch.equal(sb[k], sa[k]) for k in sb)
    meta = json.loads((tmp_path / "out" / "cahp_heads.json").read_text())
    assert meta["recovery"]["teacher"] == str(dense) and meta["method"] == "test"


def test_pure_distillation_ignores_labels(dense_and_pruned):
    from cahp_edge.model.load import load_model
    from cahp_edge.train.recover import recover

    dense, pruned = dense_and_pruned
    teacher = load_model(dense).model
    ds = sentiment(32, 4)
    flipped = TextDataset(ds.texts, None, [1 - y for y in ds.labels], ds.label_names, "flipped", "train")
    states = []
    for data in (ds, flipped):
        lm = load_model(pruned)
        m, _ = recover(
            lm.model,
            lm.tokenizer,
            data,
            distill_from=teacher,
            cfg=TrainConfig(epochs=1, lr=1e-3, batch_size=8, max_length=24, alpha=1.0),
        )
        states.append(m.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # alpha=1: only the teacher counts


def test_recover_refuses_dense_model(dense_and_pruned, tmp_path):
    from cahp_edge.train.recover import recover_dir

    dense, _ = dense_and_pruned
    with pytest.raises(ModelError, match="not a cahp-pruned model"):
        recover_dir(dense, sentiment(8, 1), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def run_cli(*args, cwd=None, timeout=180):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cahp_edge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


@pytest.mark.slow  # real CLI processes, ~6 s
def test_cli_finetune_json_and_errors(base_dir, tmp_path):
    train = write_tsv(sentiment(96, 1), tmp_path / "train.tsv")
    dev = write_tsv(sentiment(24, 2), tmp_path / "dev.tsv")
    r = run_cli(
        "finetune",
        "--model",
        base_dir,
        "--data",
        train,
        "--eval",
        dev,
        "--out",
        tmp_path / "o",
        "--epochs",
        5,
        "--lr",
        5e-3,
        "--batch-size",
        16,
        "--max-length",
        24,
        "--json",
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["accuracy"] >= 0.8 and d["label_names"] == ["neg", "pos"] and d["train"]["steps"] == 30
    assert d["health"]["weak"] is False and "warning" not in r.stderr
    # barely trained (one step at a tiny learning rate): saved, but the user is told it is not worth pruning
    r = run_cli("finetune", "--model", base_dir, "--data", train, "--eval", dev, "--out", tmp_path / "o4",
                "--epochs", 0.1, "--lr", 1e-6, "--batch-size", 16, "--max-length", 24, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["health"]["weak"] is True and (tmp_path / "o4" / "config.json").is_file()
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "not worth pruning" in warn[0] and "--allow-weak-model" in warn[0], r.stderr
    r = run_cli("finetune", "--model", base_dir, "--data", tmp_path / "missing.tsv", "--out", tmp_path / "o2")
    assert r.returncode == 1 and r.stderr.strip().startswith("error: dataset not found")
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o2").exists()
    r = run_cli("recover", "--model", base_dir, "--data", train, "--out", tmp_path / "o3", "--epochs", 0)
    assert r.returncode == 2 and "--epochs must be > 0" in r.stderr


@pytest.mark.slow  # two accelerate processes, ~7 s
def test_two_process_cpu_recover(dense_and_pruned, tmp_path):
    """Two CPU processes (torchrun, as `accelerate launch --multi_gpu` does on GPU hosts): both ranks
    train on half of every epoch, gradients are averaged over gloo, only rank 0 writes and prints."""
    from cahp_edge.model.load import load_pruned

    dense, pruned = dense_and_pruned
    train = write_tsv(sentiment(64, 3), tmp_path / "train.tsv")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cahp_edge",
        "recover",
        "--model",
        str(pruned),
        "--teacher",
        str(dense),
        "--data",
        str(train),
        "--out",
        str(tmp_path / "out"),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-length",
        "24",
        "--cpu",
        "--json",
    ]
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout[r.stdout.index("{") :])
    assert d["train"]["num_processes"] == 2 and d["train"]["steps"] == 4  # 8 batches shared by 2 ranks
    assert load_pruned(tmp_path / "out").heads_per_layer == [2, 0, 3]
