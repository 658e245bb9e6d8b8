"""Export + parity and per-layer attention fusion on tiny pruned models of every adapter."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from cahp_edge.deploy.export import ONNX_FILE, export_onnx, load_reference, ort_logits, read_meta, session
from cahp_edge.deploy.optimize import optimize_onnx
from cahp_edge.errors import ExportError
from tests.helpers.export_helpers import FAMILIES, exported, pruned_tiny


@pytest.mark.parametrize("family", FAMILIES)
def test_export_parity_with_zero_head_layer(tmp_path_factory, family):
    folder = exported(tmp_path_factory, family)
    meta = read_meta(folder)
    model, plan = pruned_tiny(family)
    assert meta["heads_per_layer"] == plan.heads_per_layer and 0 in plan.heads_per_layer
    assert meta["parity"]["mismatches"] == [] and meta["parity"]["max_abs_diff"] <= 1e-4
    assert meta["parity"]["argmax_agree"] == 1.0
    # dynamic axes: the stored parity batches have three different (batch, sequence) shapes
    batches, ref = load_reference(folder)
    assert len({b["input_ids"].shape for b in batches}) == 3
    got = ort_logits(session(folder / ONNX_FILE), batches)
    assert max(float(np.abs(r - g).max()) for r, g in zip(ref, got, strict=True)) <= 1e-4
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == model.config.model_type and "id2label" in cfg
    g = onnx.load(str(folder / ONNX_FILE))
    dims = [d.dim_param for d in g.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch_size", "sequence_length"]


@pytest.mark.parametrize("family", FAMILIES)
def test_fusion_matches_plan_per_layer(tmp_path_factory, family):
    folder = exported(tmp_path_factory, family, optimized=True)
    meta = read_meta(folder)
    _, plan = pruned_tiny(family)
    assert meta["fused"] is True and meta["warnings"] == []
    assert meta["fused_heads"] == plan.heads_per_layer
    g = onnx.load(str(folder / ONNX_FILE))
    attn = [n for n in g.graph.node if n.op_type == "Attention"]
    want = [h for h in plan.heads_per_layer if h > 0]
    assert len(attn) == len(want)
    assert [next(a.i for a in n.attribute if a.name == "num_heads") for n in attn] == want
    assert meta["parity"]["max_abs_diff"] <= 1e-4


def test_wrong_fusion_keeps_unfused_graph(tmp_path):
    # a plan that disagrees with the graph must make the optimizer refuse its fusion, not ship it
    model, _ = pruned_tiny("bert")
    src = export_onnx(model, tmp_path / "exp")
    meta = read_meta(src.path)
    meta["heads_per_layer"] = [4, 0, 4]
    (src.path / "cahp_onnx.json").write_text(json.dumps(meta))
    res = optimize_onnx(src.path, tmp_path / "opt")
    assert res.fused is False and res.fused_heads == [0, 0, 0]
    assert any("fusion rejected" in w and "[2, 3]" in w for w in res.warnings)
    g = onnx.load(str(res.onnx_path))
    assert not [n for n in g.graph.node if n.op_type == "Attention"]
    assert res.parity.ok


def test_bad_opset_is_one_error_and_writes_nothing(tmp_path):
    model, _ = pruned_tiny("bert")
    with pytest.raises(ExportError, match=r"opset 99 cannot be produced.*Fix: pass --opset between"):
        export_onnx(model, tmp_path / "out", opset=99)
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_truncated_onnx_is_one_error(tmp_path_factory, tmp_path):
    import shutil

    src = tmp_path / "exp"
    shutil.copytree(exported(tmp_path_factory, "bert"), src)
    data = (src / ONNX_FILE).read_bytes()
    (src / ONNX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match=r"fails to load.*truncated or corrupt"):
        optimize_onnx(src, tmp_path / "opt")
    assert not (tmp_path / "opt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".opt")]


def test_external_data_beyond_protobuf_limit(tmp_path, monkeypatch):
    import cahp_edge.deploy.export as ex

    monkeypatch.setattr(ex, "TWO_GB", 0)  # pretend the model is over 2 GB
    model, _ = pruned_tiny("roberta")
    res = export_onnx(model, tmp_path / "e")
    assert (tmp_path / "e" / "model.onnx.data").is_file()
    assert res.parity.ok
    g = onnx.load(str(res.onnx_path), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in g.graph.initializer)
