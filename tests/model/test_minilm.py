"""Real weights: all-MiniLM-L6-v2 as a 5-class classifier, half its heads removed, on real SST-5 sentences.

    python -m pytest tests/model/test_minilm.py
"""

from __future__ import annotations

import pytest
import torch

from cahp_edge.model.accounting import head_params
from cahp_edge.model.load import load_pruned, save_pruned
from cahp_edge.model.mask import HeadMask
from cahp_edge.model.reshape import reshape
from cahp_edge.plan import HeadPlan

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # loads the real MiniLM

# 36 of 72 heads, uneven per layer, layer 1 keeps none
KEEP_PER_LAYER = [8, 0, 5, 7, 6, 10]


def _sentences(data, n: int = 32) -> list[str]:
    lines = (data / "sst5" / "dev.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines[:n]]


def _plan() -> HeadPlan:
    g = torch.Generator().manual_seed(2)
    kept = tuple(tuple(sorted(torch.randperm(12, generator=g)[:k].tolist())) for k in KEEP_PER_LAYER)
    return HeadPlan((12,) * 6, kept)


def test_minilm_half_heads_reshape_matches_mask(minilm_path, shared_data, tmp_path):
    from cahp_edge.model.load import load_model

    torch.set_num_threads(2)
    torch.manual_seed(0)  # any head transformers initialises (classifier, pooler if absent) is seeded
    lm = load_model(minilm_path, num_labels=5)
    model, adapter = lm.model, lm.adapter
    assert lm.heads_per_layer == [12] * 6 and adapter.head_size(model.config) == 32
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a classifier whose logits move visibly when heads go
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=g) * 0.5)
        model.classifier.bias.zero_()

    batch = lm.tokenizer(_sentences(shared_data), padding=True, truncation=True, max_length=128,
                         return_tensors="pt")
    assert batch["input_ids"].shape[0] == 32 and (batch["attention_mask"] == 0).any()  # real padding
    plan = _plan()
    assert plan.total_kept == 36 and plan.heads_per_layer == KEEP_PER_LAYER

    with torch.no_grad():
        dense = model(**batch).logits  # (32, 5)
        with HeadMask(model, adapter, plan.mask()):
            masked = model(**batch).logits
        pruned = reshape(model, plan)
        out = pruned(**batch).logits

    diff = (masked - out).abs().max().item()
    assert diff <= 1e-5, f"max |masked - reshaped| = {diff:.3g}"
    assert (masked - dense).abs().max().item() > 1e-2  # the plan really changes the model
    assert adapter.heads_per_layer(pruned) == KEEP_PER_LAYER
    n_dense = sum(p.numel() for p in model.parameters())
    assert n_dense - sum(p.numel() for p in pruned.parameters()) == 36 * head_params(384, 32)

    back = load_pruned(save_pruned(pruned, plan, tmp_path / "pruned", lm.tokenizer, lm.source_hash))
    with torch.no_grad():
        assert torch.equal(back.model(**batch).logits, out)
    assert back.source_hash == lm.source_hash and back.tokenizer is not None
