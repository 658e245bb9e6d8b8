"""`build --units heads+neurons --speedup 2 --recover-method reconstruct` end to end on a tiny BERT: the
target's latency cost model is measured (x86 host), the release's ONNX graph has the plan's per-layer FFN
widths, the card says what was pruned, how, and in which cost the budget was counted."""

from __future__ import annotations

import json

import onnx
import pytest

from cahp_edge.build.options import make_options
from cahp_edge.build.pipeline import build
from cahp_edge.targets.costmodel import measurable_here
from cahp_edge.targets.profile import load_target
from tests.helpers.build_tiny import TINY_CONFIG, make_checkpoint, make_data

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not measurable_here(load_target("x86-64-avx2")),
                                                   reason="the cost stage times x86 targets on x86 hosts")]


def test_heads_and_neurons_build_ships_the_plans_widths(tmp_path):
    import torch

    torch.set_num_threads(1)
    make_checkpoint(tmp_path / "ck")
    make_data(tmp_path / "data")
    toml = "\n".join(ln for ln in TINY_CONFIG.splitlines() if not ln.startswith("heads"))
    (tmp_path / "build.toml").write_text(toml + "\n")
    cli = {"model": str(tmp_path / "ck"), "data": str(tmp_path / "data" / "train.tsv"),
           "eval": str(tmp_path / "data" / "dev.tsv"), "targets": ["x86-64-avx2"],
           "out": str(tmp_path / "dist"),
           "units": "heads+neurons", "method": "fisher", "speedup": 2.0, "recover_method": "reconstruct"}
    res = build(make_options(cli, tmp_path / "build.toml"))
    d = tmp_path / "dist" / "x86-64-avx2"
    plan = json.loads((d / "cahp_heads.json").read_text())
    assert plan["format"] == "cahp-plan/2" and plan["speedup_ideal"] >= 2.0
    rec = json.loads((d / "manifest.json").read_text())["stages"]["recover"]["summary"]
    assert rec["method"] == "reconstruct" and rec["steps"] == 0
    assert rec["reconstruction"]["positions"] > 0 and 0 < rec["reconstruction"]["error_ratio"] < 1
    inits = {i.name: list(i.dims) for i in onnx.load(str(d / "model.onnx")).graph.initializer}
    # the shipped int8 graph: each layer's up-projection bias has that layer's kept width
    widths = [inits[f"m.bert.encoder.layer.{i}.intermediate.dense.bias"][0] for i in range(3)]
    assert widths == plan["neurons_per_layer"] and sum(widths) < 144
    card = (d / "MODEL_CARD.md").read_text()
    assert f"FFN neurons: 144 -> {sum(plan['neurons_per_layer'])}" in card
    assert "cost budget fixed by --speedup" in card
    # an x86 target on an x86 host: the budget is counted in the target's measured latency
    assert "cost" in res.stages and plan["cost_model"]["unit"] == "ms"
    assert "measured: x86-64-avx2 int8 recipe" in card
    assert plan["predicted_cost"] <= plan["dense_cost"] / 2 + 1e-9
    assert "prune" in res.stages and "recover" in res.stages
