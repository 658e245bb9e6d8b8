"""Issue 13, classes 4 and 5: bounded work on hostile inputs and one-line errors for ordinary faults.
FIFOs as data, absurd config sizes, deeply nested JSON, multi-megabyte text rows, non-UTF-8 data,
disk full / names too long: each gives one line, exit 1, no traceback, and nothing of the user's changes."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest

from tests.hostile.support import fails, fails_clean


def _with_config(ckpt: Path, **changes) -> Path:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(changes)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    return ckpt


@pytest.mark.parametrize("command", ["prune", "finetune", "build"])
def test_a_fifo_as_data_is_refused_not_waited_on(command, ckpt, tmp_path, capsys):
    fifo = tmp_path / "data.tsv"
    os.mkfifo(fifo)
    argv = {"prune": ["prune", "--model", ckpt, "--data", fifo, "--out", tmp_path / "o", "--heads", "4"],
            "finetune": ["finetune", "--model", ckpt, "--data", fifo, "--out", tmp_path / "o"],
            "build": ["build", "--model", ckpt, "--data", fifo, "--out", tmp_path / "o", "--target", "host"]}
    t0 = time.monotonic()
    before = sorted(p.name for p in tmp_path.iterdir())  # (a snapshot would read the FIFO itself)
    fails(argv[command], capsys, "not a regular file")
    assert time.monotonic() - t0 < 60 and sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(("key", "value"), [("num_hidden_layers", 10**9), ("vocab_size", -1),
                                            ("hidden_size", "huge"), ("num_attention_heads", True),
                                            ("max_position_embeddings", 10**12), ("intermediate_size", 0)])
def test_absurd_config_sizes_are_refused_before_allocating(key, value, ckpt, tmp_path, capsys):
    _with_config(ckpt, **{key: value})
    t0 = time.monotonic()
    fails_clean(["inspect", ckpt], capsys, [key, "out of range"], tmp_path)
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("where", ["plan", "config"])
def test_deeply_nested_json_is_one_line(where, ckpt, tmp_path, capsys):
    deep = "[" * 200_000 + "]" * 200_000
    if where == "plan":
        plan = tmp_path / "plan.json"
        plan.write_text(deep)
        fails_clean(["reshape", "--model", ckpt, "--plan", plan, "--out", tmp_path / "o"], capsys,
                    ["plan"], tmp_path)
    else:
        (ckpt / "config.json").write_text('{"model_type": "bert", "x": ' + deep + "}")
        fails_clean(["inspect", ckpt], capsys, "config.json", tmp_path)


def test_a_multi_megabyte_row_is_cut_before_tokenizing(ckpt):
    from cahp_edge.data.dataset import TextDataset
    from cahp_edge.data.encode import CHARS_PER_TOKEN_CAP, encode
    from cahp_edge.model.load import load_model

    tok = load_model(ckpt).tokenizer
    huge = "good film " * 500_000  # 5 MB
    cut = huge[: 32 * CHARS_PER_TOKEN_CAP]
    t0 = time.monotonic()
    a = encode(tok, TextDataset([huge, "short"], None, [0, 1], ["neg", "pos"]), max_length=32)
    assert time.monotonic() - t0 < 5  # tokenizing 5 MB in full takes far longer
    b = encode(tok, TextDataset([cut, "short"], None, [0, 1], ["neg", "pos"]), max_length=32)
    assert all((x["input_ids"] == y["input_ids"]).all() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(("encoding", "named"), [("utf-16", "utf-16le"), ("utf-16-be", "utf-16be"),
                                                 ("utf-32", "utf-32le"), ("latin1", "latin1")])
def test_non_utf8_data_gets_the_right_hint(encoding, named, ckpt, tmp_path, capsys):
    data = tmp_path / "train.tsv"
    data.write_bytes("sentence\tlabel\ncafé crème\tpos\nmauvais\tneg\n".encode(encoding))
    line = fails_clean(["prune", "--model", ckpt, "--data", data, "--out", tmp_path / "o", "--heads", "4"],
                       capsys, "not UTF-8", tmp_path)
    assert f"iconv -f {named} -t utf-8" in line


def test_a_name_too_long_for_the_filesystem(ckpt, tmp_path, capsys):
    out = tmp_path / ("x" * 300)
    line = fails(["export", ckpt, "--out", out], capsys, "too long", code=1)
    assert "Fix:" in line and not any(p.name.startswith("xxx") for p in tmp_path.iterdir())


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_disk_faults_while_unpacking_are_one_line(err, onnx_pkg, tmp_path, capsys, monkeypatch):
    from cahp_edge.release import package

    rel = package.write_release(tmp_path / "dist", "host", {p.name: p for p in onnx_pkg.iterdir()}, {})

    def broken(*a, **k):
        raise OSError(err, os.strerror(err), str(tmp_path / "tmpdir" / "model.onnx"))

    monkeypatch.setattr(package.shutil, "copyfileobj", broken)
    want = {errno.ENOSPC: "disk full", errno.EDQUOT: "quota", errno.EIO: "could not write"}[err]
    fails(["verify", rel.tarball], capsys, want, code=1)
