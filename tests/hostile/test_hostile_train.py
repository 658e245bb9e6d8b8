"""Hostile inputs to `cahp-edge finetune` and `recover`: refused before training, no output folder."""

from __future__ import annotations

import json

import pytest

from tests.hostile.support import fails_clean


@pytest.mark.parametrize(
    ("opt", "msg"),
    [
        (("--epochs", "-1"), "--epochs must be > 0"),
        (("--lr", "0"), ["--lr 0.0 is out of range", "pass a value > 0"]),
        (("--batch-size", "0"), ["--batch-size 0 is out of range", "pass a value >= 1"]),
        (("--max-length", "4"), ["--max-length 4 is out of range", "pass a value in [8, 4096]"]),
    ],
    ids=["negative epochs", "zero learning rate", "zero batch size", "max length under 8"],
)
def test_finetune_impossible_options(opt, msg, ckpt, tiny_data, tmp_path, capsys):
    args = [
        "finetune",
        "--model",
        ckpt,
        "--data",
        tiny_data / "train.tsv",
        "--out",
        tmp_path / "ft",
        "-q",
        *opt,
    ]
    fails_clean(args, capsys, msg, tmp_path, code=2)


def test_finetune_eval_labels_foreign(ckpt, tiny_data, tmp_path, capsys):
    ev = tmp_path / "dev.tsv"
    ev.write_text("sentence\tlabel\nso so\tmaybe\n")
    args = [
        "finetune",
        "--model",
        ckpt,
        "--data",
        tiny_data / "train.tsv",
        "--eval",
        ev,
        "--out",
        tmp_path / "ft",
        "-q",
        "--epochs",
        "0.1",
    ]
    fails_clean(args, capsys, ["['maybe']", "not in the model's label set"], tmp_path)


def test_finetune_decoder_model(tiny_data, tmp_path, capsys):
    from transformers import GPT2Config

    d = tmp_path / "gpt2"
    GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=30).save_pretrained(str(d))
    args = ["finetune", "--model", d, "--data", tiny_data / "train.tsv", "--out", tmp_path / "ft", "-q"]
    fails_clean(args, capsys, "'gpt2' is not supported", tmp_path)


def test_recover_dense_model(ckpt, tiny_data, tmp_path, capsys):
    args = ["recover", "--model", ckpt, "--data", tiny_data / "train.tsv", "--out", tmp_path / "rec", "-q"]
    fails_clean(args, capsys, ["not a cahp-pruned model", "cahp-edge finetune"], tmp_path)


def test_recover_teacher_with_other_labels(ckpt, tiny_data, tmp_path, capsys):
    from tests.hostile.support import run_cli

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"num_heads": [4, 4, 4], "kept": [[0, 1], [2], [3]]}))
    assert (
        run_cli(["reshape", "--model", ckpt, "--plan", plan, "--out", tmp_path / "pruned"], capsys).code == 0
    )
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["id2label"], cfg["label2id"] = {"0": "a", "1": "b", "2": "c"}, {"a": 0, "b": 1, "c": 2}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    args = [
        "recover",
        "--model",
        tmp_path / "pruned",
        "--teacher",
        ckpt,
        "--data",
        tiny_data / "train.tsv",
        "--out",
        tmp_path / "rec",
        "-q",
        "--epochs",
        "0.1",
    ]
    fails_clean(args, capsys, "could not load the checkpoint", tmp_path)
