"""Head surgery on every adapter: masking == reshaping, exact parameter drop, bit-identical reload.

    python -m pytest tests/model/test_reshape.py

Runs unchanged on transformers 5.x (main venv) and 4.57.x (.venv-compat, via test_foundation_compat.py),
so it imports only torch, transformers and cahp_edge.
"""

from __future__ import annotations

import copy

import pytest
import torch

from cahp_edge.arch import get_adapter
from cahp_edge.model.accounting import head_params, model_cost
from cahp_edge.model.load import load_pruned, save_pruned
from cahp_edge.model.mask import HeadMask
from cahp_edge.model.reshape import reshape
from cahp_edge.plan import HeadPlan
from tests.helpers.tiny import TINY_CONFIGS, spread, tiny_batch, tiny_model

FAMILIES = sorted(TINY_CONFIGS)
ATOL = 1e-5  # the bar for masked dense vs reshaped logits


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _plans(heads: list[int]) -> dict[str, torch.Tensor]:
    """(L, H) 0/1 masks: seeded random, keep-all, one zero-head layer, every layer zero."""
    L, H = len(heads), max(heads)
    g = torch.Generator().manual_seed(1234)
    plans = {f"random{s}": (torch.rand(L, H, generator=g) > 0.5).float() for s in range(3)}
    plans["keep_all"] = torch.ones(L, H)
    zero_mid = (torch.rand(L, H, generator=g) > 0.3).float()
    zero_mid[L // 2] = 0.0
    zero_mid[0, 0] = 1.0  # keep at least one head elsewhere so the layer test is not also "all zero"
    plans["zero_layer"] = zero_mid
    plans["all_zero"] = torch.zeros(L, H)
    return plans


PLAN_NAMES = ["random0", "random1", "random2", "keep_all", "zero_layer", "all_zero"]


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture(scope="module", params=FAMILIES)
def fam(request):
    model = spread(tiny_model(request.param, num_labels=3, seed=7))
    return request.param, model, get_adapter(model.config), tiny_batch(model)


@pytest.mark.parametrize("plan_name", PLAN_NAMES)
def test_masked_equals_reshaped(fam, plan_name):
    family, model, adapter, batch = fam
    heads = adapter.heads_per_layer(model)
    mask = _plans(heads)[plan_name]
    plan = HeadPlan.from_mask(mask)
    dense = _logits(model, batch)
    with HeadMask(model, adapter, mask):
        masked = _logits(model, batch)
    before = copy.deepcopy(model.state_dict())
    pruned = reshape(model, plan)

    assert adapter.heads_per_layer(pruned) == plan.heads_per_layer
    out = _logits(pruned, batch)
    diff = (masked - out).abs().max().item()
    assert diff <= ATOL, f"{family}/{plan_name}: max |masked - reshaped| = {diff:.3g}"
    if plan.total_kept < plan.total_heads:
        # the mask really changed the model, so the equality above is not vacuous
        assert (masked - dense).abs().max().item() > 1e-2
    else:
        assert torch.equal(masked, dense)
    # reshape leaves its input untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(_logits(model, batch), dense)


@pytest.mark.parametrize("plan_name", ["random0", "zero_layer", "all_zero"])
def test_param_count_drops_by_formula(fam, plan_name):
    _, model, adapter, _ = fam
    heads = adapter.heads_per_layer(model)
    plan = HeadPlan.from_mask(_plans(heads)[plan_name])
    pruned = reshape(model, plan)
    removed = plan.total_heads - plan.total_kept
    per_head = head_params(adapter.hidden_size(model.config), adapter.head_size(model.config))
    n_dense = sum(p.numel() for p in model.parameters())
    n_pruned = sum(p.numel() for p in pruned.parameters())
    assert n_dense - n_pruned == removed * per_head
    assert model_cost(pruned, 16, adapter).total_params == n_pruned
    assert model_cost(pruned, 16, adapter).heads == plan.total_kept


@pytest.mark.parametrize("plan_name", ["random1", "zero_layer", "all_zero"])
def test_save_load_round_trip_is_bit_identical(fam, plan_name, tmp_path):
    _, model, adapter, batch = fam
    plan = HeadPlan.from_mask(_plans(adapter.heads_per_layer(model))[plan_name], meta={"method": "test"})
    pruned = reshape(model, plan)
    out = save_pruned(pruned, plan, tmp_path / "pruned", source_hash="abc123")
    loaded = load_pruned(out)

    assert loaded.pruned and loaded.heads_per_layer == plan.heads_per_layer
    assert loaded.source_hash == "abc123"
    sd_a, sd_b = pruned.state_dict(), loaded.model.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert sd_a[k].dtype == sd_b[k].dtype and torch.equal(sd_a[k], sd_b[k]), k
    assert torch.equal(_logits(pruned, batch), _logits(loaded.model, batch))
    assert not loaded.model.training


def test_plain_from_pretrained_fails_loudly(tmp_path):
    """reshape.py's docstring promises this: no silent re-initialisation, even when mismatches are allowed."""
    from transformers import AutoModelForSequenceClassification

    model = tiny_model("bert")
    plan = HeadPlan((4, 4, 4), ((0, 2), (), (1, 2, 3)))
    out = save_pruned(reshape(model, plan), plan, tmp_path / "pruned")
    for kwargs in ({}, {"ignore_mismatched_sizes": True}):
        with pytest.raises(OSError, match=r"model\.safetensors"):
            AutoModelForSequenceClassification.from_pretrained(str(out), **kwargs)


def test_mask_gradient_is_finite_and_nonzero(fam):
    _, model, adapter, batch = fam
    with HeadMask(model, adapter, requires_grad=True) as hm:
        logits = model(**batch).logits  # (B, C)
        logits.pow(2).sum().backward()
    grad = hm.values.grad  # (L, H)
    assert grad is not None and torch.isfinite(grad).all()
    assert (grad != 0).all(), f"heads with zero gradient: {(grad == 0).nonzero().tolist()}"
    model.zero_grad(set_to_none=True)


def test_mask_all_ones_is_identity_and_detaches(fam):
    _, model, adapter, batch = fam
    dense = _logits(model, batch)
    with HeadMask(model, adapter):
        assert torch.equal(_logits(model, batch), dense)
    mask = torch.zeros(len(adapter.heads_per_layer(model)), max(adapter.heads_per_layer(model)))
    with HeadMask(model, adapter, mask):
        assert not torch.equal(_logits(model, batch), dense)
    assert torch.equal(_logits(model, batch), dense)  # hooks removed on exit


def test_mask_on_a_pruned_model(fam):
    """Later stages mask already-pruned models (ragged heads, zero-head layers)."""
    _, model, adapter, batch = fam
    heads = adapter.heads_per_layer(model)
    first = HeadPlan.from_mask(_plans(heads)["zero_layer"])
    pruned = reshape(model, first)
    plain = _logits(pruned, batch)
    ones = torch.ones(len(heads), max(first.heads_per_layer))
    with HeadMask(pruned, adapter, ones):
        assert torch.equal(_logits(pruned, batch), plain)
    # dropping one more head by mask == dropping it by a second reshape
    layer = next(i for i, n in enumerate(first.heads_per_layer) if n >= 2)
    m2 = ones.clone()
    m2[layer, 0] = 0.0
    with HeadMask(pruned, adapter, m2):
        masked = _logits(pruned, batch)
    rows = [[1.0] * n for n in first.heads_per_layer]
    rows[layer][0] = 0.0
    second = HeadPlan(tuple(first.heads_per_layer),
                      tuple(tuple(i for i, v in enumerate(r) if v) for r in rows))
    assert (masked - _logits(reshape(pruned, second), batch)).abs().max().item() <= ATOL


@pytest.mark.parametrize("family", FAMILIES)
def test_reshape_under_sdpa_attention(family):
    """Models loaded by other code may use SDPA classes (4.57 dispatches to separate Sdpa modules)."""
    from transformers import AutoModelForSequenceClassification

    eager = spread(tiny_model(family, seed=3))
    try:
        sdpa = AutoModelForSequenceClassification.from_config(copy.deepcopy(eager.config),
                                                              attn_implementation="sdpa").eval()
    except ValueError as e:  # 4.57 ELECTRA has no SDPA path; anything else is a failure, not a skip
        import transformers

        if family != "electra" or transformers.__version__.startswith("5."):
            raise
        pytest.skip(f"{family}: no SDPA attention in transformers {transformers.__version__}: {str(e)[:60]}")
    sdpa.load_state_dict(eager.state_dict())
    adapter = get_adapter(eager.config)
    batch = tiny_batch(eager)
    mask = _plans(adapter.heads_per_layer(eager))["zero_layer"]
    with HeadMask(eager, adapter, mask):
        masked = _logits(eager, batch)
    out = _logits(reshape(sdpa, HeadPlan.from_mask(mask)), batch)
    assert (masked - out).abs().max().item() <= ATOL
