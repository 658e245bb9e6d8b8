"""Neuron plans end to end (issue 15, item 5): masked == physical == saved/loaded == ONNX == fused ONNX,
and int8, with uneven FFN widths and a zero-neuron layer on every registered architecture's tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cahp_edge.arch import get_adapter
from cahp_edge.deploy.export import export_onnx, ort_logits, read_meta, session
from cahp_edge.deploy.optimize import optimize_onnx
from cahp_edge.errors import PlanError
from cahp_edge.model.load import HEADS_FILE, load_pruned, save_pruned
from cahp_edge.model.mask import HeadMask, NeuronMask
from cahp_edge.model.reshape import reshape
from cahp_edge.plan import HeadPlan
from tests.helpers.export_helpers import FAMILIES, uneven_plan
from tests.helpers.tiny import tiny_batch, tiny_model


def neuron_plan(model, seed: int = 0) -> HeadPlan:
    """Uneven heads (one layer with none) and uneven FFN widths (layer 1 keeps no neuron)."""
    ad = get_adapter(model.config)
    heads = uneven_plan(ad.num_layers(model.config), ad.num_heads(model.config))
    widths = ad.neurons_per_layer(model)
    g = torch.Generator().manual_seed(seed)
    kept = []
    for i, w in enumerate(widths):
        n = 0 if i == 1 else [w // 2, 5, w - 3][i % 3]
        kept.append(tuple(sorted(torch.randperm(w, generator=g)[:n].tolist())))
    return HeadPlan(heads.num_heads, heads.kept, {}, tuple(widths), tuple(kept))


def _np_batch(batch: dict, ad) -> dict:
    """The ONNX feed of a torch batch (token_type_ids as zeros where the family exports them)."""
    b = {k: v.numpy() for k, v in batch.items()}
    b.setdefault("token_type_ids", np.zeros_like(b["input_ids"]))
    return {k: v for k, v in b.items() if k in ad.export_inputs}


def _masks(plan: HeadPlan) -> tuple[torch.Tensor, torch.Tensor]:
    hm = torch.tensor(plan.mask())  # (L, H)
    nm = torch.zeros(len(plan.num_neurons), max(plan.num_neurons))  # (L, I)
    for i, k in enumerate(plan.kept_neurons):
        nm[i, list(k)] = 1.0
    return hm, nm


@pytest.mark.parametrize("family", FAMILIES)
def test_neuron_plan_masked_physical_saved_onnx_fused_agree(family, tmp_path):
    m = tiny_model(family, num_labels=3).eval()
    ad = get_adapter(m.config)
    plan = neuron_plan(m)
    batch = tiny_batch(m, batch=4, seq=11, seed=5)
    hm, nm = _masks(plan)
    with torch.no_grad(), HeadMask(m, ad, hm), NeuronMask(m, ad, nm):
        masked = m(**batch).logits.numpy()  # (4, 3)
    pruned = reshape(m, plan, ad)
    assert ad.neurons_per_layer(pruned) == plan.neurons_per_layer and 0 in plan.neurons_per_layer
    assert ad.heads_per_layer(pruned) == plan.heads_per_layer
    with torch.no_grad():
        phys = pruned(**batch).logits.numpy()
        dense = m(**batch).logits.numpy()
    np.testing.assert_allclose(phys, masked, atol=1e-5)
    assert np.abs(phys - dense).max() > 1e-4  # the plan changed the function: 10x the tolerance

    save_pruned(pruned, plan, tmp_path / "p", source_hash="abc")
    saved = json.loads((tmp_path / "p" / HEADS_FILE).read_text())
    assert saved["format"] == "cahp-plan/2" and saved["neurons_per_layer"] == plan.neurons_per_layer
    back = load_pruned(tmp_path / "p")
    assert ad.neurons_per_layer(back.model) == plan.neurons_per_layer
    with torch.no_grad():
        again = back.model(**batch).logits.numpy()
    np.testing.assert_array_equal(again, phys)  # bit-identical after a round trip

    onnx_dir = tmp_path / "onnx"
    exp = export_onnx(back.model, onnx_dir, batches=[_np_batch(batch, ad)])
    assert exp.parity.max_abs_diff <= 1e-4
    assert read_meta(onnx_dir)["neurons_per_layer"] == plan.neurons_per_layer
    opt = optimize_onnx(onnx_dir, tmp_path / "opt")
    meta = read_meta(tmp_path / "opt")
    assert opt.fused and not opt.warnings, opt.warnings
    assert meta["fused_ffn_widths"] == plan.neurons_per_layer  # bias+GELU fused per layer, its own width
    got = ort_logits(session(tmp_path / "opt" / "model.onnx"), [_np_batch(batch, ad)])[0]
    np.testing.assert_allclose(got, masked, atol=1e-4)


def test_int8_quantizes_uneven_and_zero_width_ffn(tmp_path):
    from cahp_edge.deploy.quantize import quantize
    from tests.helpers.export_helpers import random_examples, recipe_target

    m = tiny_model("bert", num_labels=2).eval()
    pruned = reshape(m, neuron_plan(m), get_adapter(m.config))
    export_onnx(pruned, tmp_path / "e")
    optimize_onnx(tmp_path / "e", tmp_path / "o")
    import onnx

    from cahp_edge.deploy.graph import empty_weight_nodes, quantizable_nodes

    fp32 = onnx.load(str(tmp_path / "o" / "model.onnx"))
    empty = empty_weight_nodes(fp32)  # the zero-neuron layer's up and down projections (and its bias+GELU)
    assert sorted(n for n in empty if "MatMul" in n) == [f"/m/bert/encoder/layer.1/{p}/dense/MatMul"
                                                          for p in ("intermediate", "output")]
    res = quantize(tmp_path / "o", recipe_target(), tmp_path / "q", select=random_examples(tmp_path / "o"))
    assert res.agreement >= 0.95
    assert res.quantized_matmuls == len(quantizable_nodes(fp32, ["MatMul", "Attention"]))  # every other one


def test_neuron_plan_for_another_model_is_refused():
    m = tiny_model("bert", num_labels=2)
    ad = get_adapter(m.config)
    plan = neuron_plan(m)
    wider = HeadPlan(plan.num_heads, plan.kept, {}, tuple(w + 8 for w in plan.num_neurons), plan.kept_neurons)
    with pytest.raises(PlanError, match="FFN widths") as e:
        reshape(m, wider, ad)
    assert str(ad.neurons_per_layer(m)) in str(e.value)  # names the mismatch
