"""Adapter registry, refused families, plan validation, accounting formulas, atomic outputs."""

from __future__ import annotations

import json

import pytest
import torch

from cahp_edge import arch
from cahp_edge.errors import CahpError, OutputError, PlanError, UnsupportedArchitecture
from cahp_edge.fsutil import atomic_dir
from cahp_edge.model.accounting import head_params, ideal_speedup, model_cost
from cahp_edge.model.reshape import reshape
from cahp_edge.plan import HeadPlan
from tests.helpers.tiny import TINY_CONFIGS, tiny_model


def test_every_registered_adapter_has_a_tiny_model():
    """Adding an adapter without a tiny-model fixture in tests/helpers/tiny.py must fail CI."""
    names = {a.name for a in arch.registered().values()}
    missing = sorted(names - set(TINY_CONFIGS))
    assert not missing, f"adapters without a tiny model in tests/helpers/tiny.py TINY_CONFIGS: {missing}"
    for family in TINY_CONFIGS:  # and each fixture really builds a model of its own family
        model = tiny_model(family)
        assert arch.get_adapter(model.config).name == family


def test_model_types_map_to_their_adapter():
    for model_type, adapter in arch.registered().items():
        assert model_type in adapter.model_types
        assert arch.get_adapter(model_type) is adapter


def _refusal(config) -> str:
    with pytest.raises(UnsupportedArchitecture) as ei:
        arch.get_adapter(config)
    msg = str(ei.value)
    assert "not supported" in msg and "\n" not in msg
    for name in arch.registered():
        assert name in msg, f"supported list missing {name}: {msg}"
    return msg


def test_albert_is_refused_with_reason():
    from transformers import AlbertConfig

    assert "shares one set of attention weights" in _refusal(AlbertConfig())
    model = torch.nn.Module()
    model.config = AlbertConfig()
    with pytest.raises(UnsupportedArchitecture):
        reshape(model, HeadPlan.keep_all([12]))


def test_decoders_are_refused():
    from transformers import BertConfig, GPT2Config

    _refusal(GPT2Config())
    assert "decoder" in _refusal(BertConfig(is_decoder=True))
    assert "decoder" in _refusal(BertConfig(add_cross_attention=True))
    _refusal("albert")  # by model_type string too
    _refusal(type("Cfg", (), {"model_type": None})())


@pytest.mark.parametrize(
    ("plan", "needle"),
    [
        ({"num_heads": [4, 4], "kept": [[0, 0], [1]]}, "twice in layer 0"),
        ({"num_heads": [4, 4], "kept": [[0], [4]]}, "head(s) [4] in layer 1"),
        ({"num_heads": [4, 4], "kept": [[0], [-1]]}, "head(s) [-1] in layer 1"),
        ({"num_heads": [4, 4], "kept": [[0], [1], [2]]}, "inconsistent"),
        ({"num_heads": [4, 0], "kept": [[0], []]}, "positive integers"),
        ({"num_heads": [4], "kept": [["a"]]}, "list of lists"),
        ({"num_heads": [4], "kept": [[True]]}, "list of lists"),
        ({"kept": [[0]]}, "no 'num_heads'"),
        ([1, 2], "not a head plan"),
    ],
)
def test_bad_plans_are_plan_errors(plan, needle):
    with pytest.raises(PlanError) as ei:
        HeadPlan.from_dict(plan)
    assert needle in str(ei.value)
    assert "Fix:" in str(ei.value)


def test_plan_round_trip_and_model_fit(tmp_path):
    plan = HeadPlan.from_dict({"num_heads": [4, 4, 4], "kept": [[3, 1], [], [0, 1, 2, 3]], "method": "x"})
    assert plan.kept == ((1, 3), (), (0, 1, 2, 3)) and plan.heads_per_layer == [2, 0, 4]
    back = HeadPlan.load(plan.save(tmp_path / "plan.json"))
    assert back == plan and back.meta == {"method": "x", "heads_per_layer": [2, 0, 4], "total_kept": 6}
    assert HeadPlan.from_mask(plan.mask()) == plan
    with pytest.raises(PlanError, match="does not fit"):
        reshape(tiny_model("bert"), HeadPlan.keep_all([4, 4]))  # tiny bert has 3 layers


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_macs_and_params_follow_the_formula(family):
    model = tiny_model(family)
    adapter = arch.get_adapter(model.config)
    cfg = model.config
    D, d, T = adapter.hidden_size(cfg), adapter.head_size(cfg), 16
    ffn_width = getattr(cfg, "intermediate_size", None) or cfg.hidden_dim
    H, L = adapter.num_heads(cfg), adapter.num_layers(cfg)
    plan = HeadPlan.from_mask([[1.0] * (H - i) + [0.0] * i for i in range(L - 1)] + [[0.0] * H])
    dense, pruned = model_cost(model, T, adapter), model_cost(reshape(model, plan), T, adapter)
    for cost, heads in ((dense, [H] * L), (pruned, plan.heads_per_layer)):
        assert [c.heads for c in cost.layers] == heads
        for c, k in zip(cost.layers, heads, strict=True):
            assert c.attn_macs == 3 * T * D * k * d + 2 * T * T * k * d + T * k * d * D
            assert c.ffn_macs == 2 * T * D * ffn_width
    removed = L * H - plan.total_kept
    assert dense.total_params - pruned.total_params == removed * head_params(D, d)
    assert dense.total_params == sum(p.numel() for p in model.parameters())
    assert dense.total_macs - pruned.total_macs == dense.attn_macs - pruned.attn_macs
    assert ideal_speedup(dense, pruned) > 1.0
    json.dumps(pruned.to_dict())  # serialisable for `inspect --json`


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    from cahp_edge.fsutil import OWNER_MARK

    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("done")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(OutputError, match="not empty"), atomic_dir(out):
        pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("again")
    assert sorted(p.name for p in out.iterdir()) == [OWNER_MARK, "b.txt"]  # the marker proves it is ours
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_errors_are_one_line_with_fix():
    e = PlanError("bad\nplan", "multi\nline why", "do this")
    assert e.line() == "bad plan: multi line why. Fix: do this" and e.exit_code == 1
    assert issubclass(UnsupportedArchitecture, CahpError)
