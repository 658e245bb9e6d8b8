"""Target-driven quantization of tiny pruned models: agreement, exact quantized-node counts, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from cahp_edge.deploy.export import ONNX_FILE, export_onnx, ort_logits, read_meta, session
from cahp_edge.deploy.graph import quantizable_nodes
from cahp_edge.deploy.optimize import optimize_onnx
from cahp_edge.deploy.quantize import quantize
from cahp_edge.errors import QuantizeError
from tests.helpers.export_helpers import FAMILIES, exported, pruned_tiny, random_examples, recipe_target


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("family", FAMILIES)
def test_dynamic_int8_agrees_and_quantizes_every_matmul(tmp_path_factory, tmp_path, family):
    src = exported(tmp_path_factory, family, optimized=True)
    ex = random_examples(src)
    res = quantize(src, recipe_target(), tmp_path / "q", select=ex)
    assert res.agreement >= 0.98
    fp32 = onnx.load(str(src / ONNX_FILE))
    expected = len(quantizable_nodes(fp32, ["MatMul", "Attention"]))
    assert res.quantized_matmuls == expected
    ops = _ops(res.onnx_path)
    n_layers_with_heads = sum(1 for h in read_meta(src)["heads_per_layer"] if h > 0)
    assert ops.count("QAttention") == n_layers_with_heads and "Attention" not in ops
    assert read_meta(res.path)["stage"] == "quantize"


def test_bert_golden_counts(tmp_path_factory, tmp_path):
    # plan [2, 0, 3]: 2 QAttention + 2 output projections + 3x2 FFN + pooler + classifier = 12
    src = exported(tmp_path_factory, "bert", optimized=True)
    res = quantize(src, recipe_target(), tmp_path / "q")
    assert res.quantized_matmuls == 12
    qdq = quantize(src, recipe_target(format="QDQ"), tmp_path / "qdq")
    # QDQ form covers the MatMuls with constant weights (Attention stays fp32): 2 + 6 = 8
    assert qdq.quantized_matmuls == 8 and _ops(qdq.onnx_path).count("DynamicQuantizeLinear") == 8


@pytest.mark.parametrize("kw", [dict(mode="static", format="QDQ", calibration_method="minmax"),
                                dict(mode="static", format="QOperator", calibration_method="entropy",
                                     op_types=["MatMul"]),
                                dict(mode="static", format="QDQ", calibration_method="percentile",
                                     op_types=["MatMul"]),
                                dict(mode="dynamic", per_channel=False, reduce_range=True),
                                dict(mode="fp16")])
def test_recipes_keep_agreement(tmp_path_factory, tmp_path, kw):
    src = exported(tmp_path_factory, "bert", optimized=True)
    ex = random_examples(src)
    cal = random_examples(src, n=32, seed=9)
    res = quantize(src, recipe_target(**kw), tmp_path / "q", calib=cal, select=ex)
    assert res.agreement >= 0.98
    if kw["mode"] == "fp16":
        assert res.quantized_matmuls == 0
    else:
        assert res.quantized_matmuls >= 8  # every MatMul of the 2+0+3-head encoder


def test_accuracy_gate_keeps_the_sensitive_node_in_fp32(tmp_path):
    import torch

    model, _ = pruned_tiny("bert")
    with torch.no_grad():
        # pooled feature 0 is always tanh(0) = 0, so a huge classifier weight on it changes nothing in
        # fp32 but leaves per-tensor int8 no resolution for the other weights: the classifier alone breaks
        model.bert.pooler.dense.weight[0].zero_()
        model.bert.pooler.dense.bias[0] = 0
        model.classifier.weight.mul_(30)
        model.classifier.bias.zero_()
        model.classifier.weight[:, 0] = 1000.0
    src = export_onnx(model, tmp_path / "exp").path
    ex = random_examples(src)
    labels = np.concatenate([lg.argmax(-1) for lg in ort_logits(session(src / ONNX_FILE), ex.batches)])
    assert len(set(labels.tolist())) > 1
    plain = quantize(src, recipe_target(per_channel=False, max_drop=1.0), tmp_path / "plain",
                     select=(ex.batches, labels))
    assert plain.accuracy["drop"] > 0.05 and plain.fp32_nodes == []
    res = quantize(src, recipe_target(per_channel=False, max_drop=0.03), tmp_path / "gated",
                   select=(ex.batches, labels))
    assert res.fp32_nodes == ["/m/classifier/Gemm"]
    assert res.accuracy["drop"] <= 0.03 and res.accuracy["fp32"] == 1.0
    assert read_meta(res.path)["fp32_nodes"] == res.fp32_nodes
    assert res.quantized_matmuls == plain.quantized_matmuls - 1
    assert any("accuracy gate" in w for w in res.warnings)


def test_ort_format_and_reduced_build_config(tmp_path_factory, tmp_path):
    from cahp_edge.deploy.mobile import OPS_CONFIG, ops_in_config

    src = exported(tmp_path_factory, "bert", optimized=True)
    res = quantize(src, recipe_target(formats=("onnx", "ort")), tmp_path / "q")
    assert res.ort_path is not None and res.ort_path.suffix == ".ort"
    ops = ops_in_config(res.path / OPS_CONFIG)
    assert "QAttention" in ops["com.microsoft"]
    batches = random_examples(src, n=16).batches
    a = ort_logits(session(res.ort_path), batches)[0]
    b = ort_logits(session(res.onnx_path), batches)[0]
    assert np.abs(a - b).max() < 1e-4


@pytest.mark.parametrize(("kw", "setting"), [
    (dict(mode="dynamic", activation_type="int8"), "activation_type"),
    (dict(mode="dynamic", calibration_method="entropy"), "calibration_method"),
    (dict(arch="aarch64", reduce_range=True), "reduce_range"),
    (dict(op_types=[]), "op_types"),
])
def test_contradictory_recipe_names_the_setting(tmp_path_factory, tmp_path, kw, setting):
    src = exported(tmp_path_factory, "bert", optimized=True)
    arch = kw.pop("arch", "x86_64")
    with pytest.raises(QuantizeError, match=f"setting '{setting}' contradicts"):
        quantize(src, recipe_target(arch=arch, **kw), tmp_path / "q")
    assert not list(tmp_path.iterdir())


def test_calibration_smaller_than_asked(tmp_path_factory, tmp_path):
    src = exported(tmp_path_factory, "bert", optimized=True)
    cal = random_examples(src, n=16)
    with pytest.raises(QuantizeError, match=r"calibration data has 16 examples, fewer than the 32 asked"):
        target = recipe_target(mode="static", format="QDQ", calibration_size=32)
        quantize(src, target, tmp_path / "q", calib=cal)
    assert not list(tmp_path.iterdir())
    # asked on the command line: the message names the option, not the target
    target = recipe_target(mode="static", format="QDQ", calibration_size=8)
    with pytest.raises(QuantizeError) as e:
        quantize(src, target, tmp_path / "q", calib=cal, calib_size=20)
    assert "fewer than the 20 asked" in str(e.value) and "--calib-size 20" in str(e.value)
    assert "in target" not in str(e.value)
    assert not list(tmp_path.iterdir())


def test_truncated_input_and_requantize_refused(tmp_path_factory, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(exported(tmp_path_factory, "bert", optimized=True), src)
    q = quantize(src, recipe_target(), tmp_path / "q")
    with pytest.raises(QuantizeError, match="already 'quantize' model"):
        quantize(q.path, recipe_target(), tmp_path / "q2")
    data = (src / ONNX_FILE).read_bytes()
    (src / ONNX_FILE).write_bytes(data[:1000])
    with pytest.raises(Exception, match="fails to load"):
        quantize(src, recipe_target(), tmp_path / "q3")
    assert not (tmp_path / "q2").exists() and not (tmp_path / "q3").exists()


def test_shipped_target_profile_drives_quantization(tmp_path_factory, tmp_path):
    from cahp_edge.targets import profile as targets
    src = exported(tmp_path_factory, "distilbert", optimized=True)
    t = targets.load_target("x86-64-avx2")
    res = quantize(src, t, tmp_path / "q")
    meta = json.loads((res.path / "cahp_onnx.json").read_text())
    assert meta["target"] == "x86-64-avx2" and meta["recipe"]["reduce_range"] is True
    assert res.agreement >= 0.98


def test_every_shipped_target_quantizes(tmp_path_factory, tmp_path):
    from cahp_edge.targets import profile as targets
    src = exported(tmp_path_factory, "bert", optimized=True)
    cal = random_examples(src, n=256)
    for name in targets.list_targets():
        t = targets.load_target(name)
        res = quantize(src, t, tmp_path / name, calib=cal)
        assert res.agreement >= 0.98, name
        assert (res.ort_path is not None) == ("ort" in t.formats), name
        if t.quantization.mode in ("dynamic", "static"):
            assert res.quantized_matmuls >= 8, name


def test_optimize_then_quantize_distilbert_unfused_path(tmp_path):
    # quantizing the plain export (no fusion) also works and counts the separate Q/K/V MatMuls
    model, _ = pruned_tiny("distilbert")
    e = export_onnx(model, tmp_path / "e")
    res = quantize(e.path, recipe_target(), tmp_path / "q")
    # 2 heads-layers x (q,k,v,out) + 3 x FFN(2) + pre_classifier + classifier = 8 + 6 + 2
    assert res.quantized_matmuls == 16
    assert optimize_onnx(e.path, tmp_path / "o").fused
