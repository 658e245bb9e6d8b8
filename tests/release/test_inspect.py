"""`cahp-edge inspect` on a release folder and an ONNX file, and `build --keep-pytorch`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cahp_edge.build.options import make_options
from cahp_edge.build.pipeline import build
from cahp_edge.release.package import check_files, read_sums

pytestmark = pytest.mark.slow  # uses the session's tiny pair-task build

REPO = Path(__file__).resolve().parents[2]


def _inspect(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "cahp_edge", "inspect", *args, "--json"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def keep_pytorch_release(pair_release, tmp_path_factory):
    root, _ = pair_release
    out = tmp_path_factory.mktemp("keep") / "dist"
    base = {"model": str(root / "ck"), "data": str(root / "data" / "train.tsv"),
            "eval": str(root / "data" / "dev.tsv"), "targets": ["host"], "out": str(out)}
    build(make_options(base, root / "build.toml"))
    plain_files = set(read_sums(out / "host"))
    res = build(make_options({**base, "keep_pytorch": True}, root / "build.toml"))
    assert not res.stages["package:host"].hit  # same stages, other contents: a new release, not a cached one
    return out / "host", plain_files


def test_keep_pytorch_ships_a_loadable_pruned_model(keep_pytorch_release):
    from cahp_edge.model.load import load_pruned

    rel, plain_files = keep_pytorch_release
    files = set(read_sums(rel))
    assert not any(f.startswith("pytorch/") for f in plain_files)
    assert {"pytorch/pruned_model.safetensors", "pytorch/cahp_heads.json", "pytorch/config.json"} <= files
    assert files - plain_files == {f for f in files if f.startswith("pytorch/")}
    check_files(rel)
    lm = load_pruned(rel / "pytorch")
    plan = json.loads((rel / "cahp_heads.json").read_text())
    assert lm.heads_per_layer == plan["heads_per_layer"]

    d = _inspect(str(rel))
    assert d["kind"] == "release" and d["release"]["pytorch"] is True
    # the weightless skeleton inspect builds from config.json + cahp_heads.json is the shipped model's shape
    assert d["total_params"] == sum(p.numel() for p in lm.model.parameters())
    assert [c["heads"] for c in d["layers"]] == plan["heads_per_layer"]


def test_inspect_release_and_onnx_file(pair_release, tmp_path):
    _, rel = pair_release
    d = _inspect(str(rel))
    plan = json.loads((rel / "cahp_heads.json").read_text())
    assert d["kind"] == "release" and d["pruned"] and d["release"]["pytorch"] is False
    assert d["heads"] == sum(plan["heads_per_layer"]) and len(d["layers"]) == len(plan["heads_per_layer"])
    metrics = json.loads((rel / "metrics.json").read_text())
    assert d["release"]["accuracy"] == metrics["models"]["shipped"]["accuracy"]
    assert d["onnx"]["quantized"] and d["onnx"]["params_by_dtype"].get("int8", 0) > 0

    inside = _inspect(str(rel / "model.onnx"))  # in its release: shape known from the files beside it
    assert inside["kind"] == "onnx" and inside["heads"] == d["heads"]
    assert inside["onnx"]["stored_params"] == d["onnx"]["stored_params"]
    alone = tmp_path / "m.onnx"
    shutil.copyfile(rel / "model.onnx", alone)
    bare = _inspect(str(alone))
    assert bare["kind"] == "onnx" and "layers" not in bare and bare["onnx"]["nodes"] > 0

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    r = subprocess.run([sys.executable, "-m", "cahp_edge", "inspect", str(bad)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "is not a readable ONNX model" in r.stderr
