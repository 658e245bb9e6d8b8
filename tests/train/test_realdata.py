"""all-MiniLM-L6-v2 on the shipped demo sentiment set: the demo's fine-tune reaches >= 85% dev accuracy,
and recovery of a half-pruned copy (with distillation) wins accuracy back. ~1 min of CPU on 2 cores."""

from __future__ import annotations

import pytest
import torch

from cahp_edge.data import DEMO_DATA, align_labels, load_dataset
from cahp_edge.model.evaluate import evaluate_accuracy
from cahp_edge.train.loop import TrainConfig

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_model(minilm_path, tmp_path_factory):
    from cahp_edge.train.finetune import finetune

    out = tmp_path_factory.mktemp("demo") / "ft"
    # the settings `cahp-edge demo` uses (pipeline.DEMO_DEFAULTS): 3 epochs, batch 16, max length 64
    res = finetune(minilm_path, DEMO_DATA, out, DEMO_DATA / "sentiment_dev.tsv",
                   TrainConfig(epochs=3, batch_size=16, max_length=64, seed=0))
    return out, res


def test_demo_finetune_accuracy(demo_model):
    _, res = demo_model
    assert res.label_names == ["negative", "positive"]
    assert res.accuracy >= 0.85, f"demo fine-tune reached only {res.accuracy:.3f} on the shipped dev split"


def test_recover_half_pruned_minilm(demo_model, tmp_path):
    from cahp_edge.model.load import load_model, save_pruned
    from cahp_edge.model.reshape import reshape
    from cahp_edge.plan import HeadPlan
    from cahp_edge.train.recover import recover_dir

    dense, _ = demo_model
    lm = load_model(dense)
    g = torch.Generator().manual_seed(0)
    # drop 9 of 12 heads in every layer but the first two, one layer keeps none: a hard, uneven plan
    kept = [list(range(12)), sorted(torch.randperm(12, generator=g)[:6].tolist()), [], [0, 5, 7],
            [1, 2, 11], [3, 4, 9]]
    plan = HeadPlan((12,) * 6, tuple(tuple(k) for k in kept), {"method": "test"})
    save_pruned(reshape(lm.model, plan, lm.adapter), plan, tmp_path / "pruned", lm.tokenizer, lm.source_hash)
    dev = align_labels(load_dataset(DEMO_DATA, "dev"), lm.model.config.id2label)
    res = recover_dir(tmp_path / "pruned", DEMO_DATA / "sentiment_train.tsv", tmp_path / "rec", teacher=dense,
                      eval_data=dev, cfg=TrainConfig(epochs=1, lr=5e-5, batch_size=16, max_length=64))
    assert res.heads_per_layer == [12, 6, 0, 3, 3, 3]
    after = load_model(tmp_path / "rec")
    acc = evaluate_accuracy(after.model, after.tokenizer, dev, max_length=64)
    assert acc == pytest.approx(res.accuracy_after) and acc >= res.accuracy_before and acc >= 0.85
