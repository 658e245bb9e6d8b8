"""Releases name files, not the build machine's paths, and round floats in one place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cahp_edge.release.portable import portable, portable_text

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("/work/data/train.tsv", "train.tsv"),
        ("128 rows of /work/data/sst5/train.txt (seed 0)", "128 rows of train.txt (seed 0)"),
        ("rows of /a/b/dev.tsv, not /a/b/train.tsv", "rows of dev.tsv, not train.tsv"),
        ("/tmp/out/.cahp-cache/finetune-54ab5367694cba19/artifact", "finetune-54ab5367694cba19"),
        ("/tmp/out/.cahp-cache/quantize-1/artifact/model.onnx", "quantize-1"),
        ("model folder /home/u/ckpt/", "model folder ckpt"),
        ("ssh://pi@raspberrypi.local/home/pi/pkg", "ssh://pi@raspberrypi.local/home/pi/pkg"),  # a URL stays
        ("data/train.tsv", "data/train.tsv"),  # relative: already portable
        ("1/2 of the heads, 3 km/h, and/or /month", "1/2 of the heads, 3 km/h, and/or /month"),
        ("my-org/my-sst2-model", "my-org/my-sst2-model"),  # a hub id
        ("(see /etc/cahp/x.toml)", "(see x.toml)"),
    ],
)
def test_paths_become_file_names(text, want):
    assert portable_text(text) == want


def test_floats_rounded_ints_and_keys_kept():
    doc = {"accuracy": 0.5416666666666666, "n": 24, "/abs/key": [1.23456789e-07, 2.0, True, None]}
    assert portable(doc) == {"accuracy": 0.541667, "n": 24, "/abs/key": [1.23457e-07, 2.0, True, None]}
    assert portable({"eps": 1.234567891e-12}, round_floats=False) == {"eps": 1.234567891e-12}


def _floats(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _floats(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _floats(v)
    elif isinstance(obj, float):
        yield obj


@pytest.mark.slow
def test_release_documents_carry_no_build_paths(pair_release):
    root, rel = pair_release
    machine = [str(root), str(REPO), "/tmp/", str(Path.home()) + "/"]
    user_data = {"eval.jsonl", "tokenizer.json", "vocab.txt"}
    checked = 0
    for p in sorted(rel.rglob("*")):
        if not p.is_file() or p.suffix in (".onnx", ".ort", ".safetensors", ".py") or p.name in user_data:
            continue
        text = p.read_text(encoding="utf-8")
        leaks = [m for m in machine if m in text]
        assert not leaks, f"{p.name} names {leaks}"
        checked += 1
    assert checked >= 8  # manifest, metrics, cahp_heads, config, target, card, report, SHA256SUMS ...
    for name in ("metrics.json", "manifest.json", "cahp_heads.json"):
        doc = json.loads((rel / name).read_text())
        digits = [len(f"{x:.15g}".lstrip("-0.").replace(".", "").split("e")[0]) for x in _floats(doc)]
        assert max(digits) <= 6, name
    data = json.loads((rel / "manifest.json").read_text())["data"]
    assert data["train"] == "train.tsv" and len(data["train_sha256"]) == 64
