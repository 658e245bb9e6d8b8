"""Heads + neurons builds end to end on a tiny BERT: `--cost-model macs --speedup 2 --recover-method
reconstruct` ships an int8 graph with the plan's per-layer FFN widths and a card that says what was
pruned and how; the default build (an x86 target on an x86 host) measures the target's latency cost
model first and counts its budget in it."""

from __future__ import annotations

import json

import onnx
import pytest

from cahp_edge.build.options import make_options
from cahp_edge.build.pipeline import build
from cahp_edge.targets.costmodel import measurable_here
from cahp_edge.targets.profile import load_target
from tests.helpers.build_tiny import TINY_CONFIG, make_checkpoint, make_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("units")
    make_checkpoint(root / "ck")
    make_data(root / "data")
    toml = "\n".join(ln for ln in TINY_CONFIG.splitlines() if not ln.startswith("heads"))
    (root / "build.toml").write_text(toml + "\n")
    return root


def _build(root, out: str, **extra):
    cli = {"model": str(root / "ck"), "data": str(root / "data" / "train.tsv"),
           "eval": str(root / "data" / "dev.tsv"), "targets": ["x86-64-avx2"], "out": str(root / out),
           **extra}
    return build(make_options(cli, root / "build.toml"))


def _widths(release) -> list[int]:
    """Each layer's up-projection width in the shipped int8 graph (the output dimension of its int8 weight;
    an fp32 MatMul where the layer keeps no neuron): that layer's kept FFN width."""
    g = onnx.load(str(release / "model.onnx")).graph
    inits = {i.name: list(i.dims) for i in g.initializer}
    out = []
    for i in range(3):
        up = f"/m/bert/encoder/layer.{i}/intermediate/dense/MatMul"
        node = next(n for n in g.node if n.name.startswith(up) and n.op_type in ("MatMulInteger", "MatMul"))
        out.append(inits[node.input[1]][-1])
    return out


def test_heads_and_neurons_build_ships_the_plans_widths(root):
    res = _build(root, "macs", cost_model="macs", speedup=2.0, recover_method="reconstruct")
    d = root / "macs" / "x86-64-avx2"
    plan = json.loads((d / "cahp_heads.json").read_text())
    assert plan["format"] == "cahp-plan/2" and plan["method"] == "fisher" and plan["speedup_ideal"] >= 2.0
    rec = json.loads((d / "manifest.json").read_text())["stages"]["recover"]["summary"]
    assert rec["method"] == "reconstruct" and rec["steps"] == 0
    assert rec["reconstruction"]["positions"] > 0 and 0 < rec["reconstruction"]["error_ratio"] < 1
    assert _widths(d) == plan["neurons_per_layer"] and sum(plan["neurons_per_layer"]) < 144
    card = (d / "MODEL_CARD.md").read_text()
    assert f"FFN neurons: 144 -> {sum(plan['neurons_per_layer'])}" in card
    assert "cost budget fixed by --speedup" in card and "MAC-proportional (not measured)" in card
    assert "cost" not in res.stages and {"prune", "recover"} <= set(res.stages)


@pytest.mark.skipif(not measurable_here(load_target("x86-64-avx2")),
                    reason="the cost stage times x86 targets on x86 hosts")
def test_default_build_counts_its_budget_in_the_targets_measured_latency(root):
    res = _build(root, "default")  # every default: heads + neurons, fisher, knee, reconstruct on CPU
    d = root / "default" / "x86-64-avx2"
    plan = json.loads((d / "cahp_heads.json").read_text())
    cost = res.stages["cost"].summary
    assert plan["cost_model"]["unit"] == "ms" and plan["cost_model"]["source"].startswith("measured: x86-64")
    # (release documents keep 6 significant digits)
    assert cost["per_head_ms"] == pytest.approx(plan["cost_model"]["per_head"], rel=1e-5)
    assert len(plan["cost_model"]["measured"]) == 5
    assert plan["predicted_cost"] <= plan["dense_cost"] + 1e-12 and plan["budget_source"] == "knee"
    assert _widths(d) == plan["neurons_per_layer"]
    rec = json.loads((d / "manifest.json").read_text())["stages"]["recover"]["summary"]
    assert rec["method"] == "reconstruct"  # auto on a CPU, for a neuron plan
    assert "measured: x86-64-avx2 int8 recipe" in (d / "MODEL_CARD.md").read_text()
    report = (d / "report.html").read_text()
    assert "Accuracy vs cost: the budgets scored, and what shipped" in report  # the frontier, not a head knee
    assert "Head count: sweep, fit and knee" not in report
