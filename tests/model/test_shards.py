"""Issue 13, class 2: the checkpoint hash (the build cache's key) covers exactly what loading reads —
every shard a weight index names, whatever its file name — and an index cannot point outside the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cahp_edge.errors import ModelError
from cahp_edge.model.load import checkpoint_hash, index_shards


def _sharded(d: Path, names: list[str], index: str = "model.safetensors.index.json") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text('{"model_type": "bert"}')
    weight_map = {}
    for i, name in enumerate(names):
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"shard {i}".encode())
        weight_map[f"layer.{i}.weight"] = name
    (d / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return d


@pytest.mark.parametrize("names", [
    ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],  # the usual names
    ["weights_a.safetensors", "weights_b.safetensors"],  # names the old glob did not cover
    ["sub/part1.safetensors", "part2.safetensors"],  # a shard in a subfolder
    ["one.bin", "two.bin"],  # pickle shards (pytorch_model.bin.index.json)
])
def test_every_indexed_shard_changes_the_hash(tmp_path, names):
    index = "pytorch_model.bin.index.json" if names[0].endswith(".bin") else "model.safetensors.index.json"
    d = _sharded(tmp_path / "ck", names, index)
    assert index_shards(d) == sorted(names)
    before = checkpoint_hash(d)
    for name in names:
        p = d / name
        old = p.read_bytes()
        p.write_bytes(old + b" changed")
        assert checkpoint_hash(d) != before, f"a change to {name} was not noticed"
        p.write_bytes(old)
    assert checkpoint_hash(d) == before


@pytest.mark.parametrize("evil", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_shards_outside_the_folder_are_refused(tmp_path, evil):
    (tmp_path / "outside.safetensors").write_bytes(b"not yours")
    (tmp_path / "x.safetensors").write_bytes(b"not yours")
    d = tmp_path / "ck"
    _sharded(d, ["ok.safetensors"])
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    idx["weight_map"]["evil"] = evil
    (d / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(ModelError, match="outside the checkpoint folder"):
        checkpoint_hash(d)


def test_missing_shard_and_broken_index_are_one_line_errors(tmp_path):
    d = _sharded(tmp_path / "ck", ["a.safetensors", "b.safetensors"])
    (d / "b.safetensors").unlink()
    with pytest.raises(ModelError, match=r"'b\.safetensors' named by .* is missing"):
        checkpoint_hash(d)
    (d / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a readable weight index"):
        index_shards(d)
