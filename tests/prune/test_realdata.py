"""MiniLM (6 x 12 heads) + SST-5 subsets: `cahp-edge prune` end to end on real data (minutes at most)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # loads the real MiniLM


@pytest.fixture(scope="module")
def minilm_cls(minilm_path, tmp_path_factory) -> Path:
    """The base encoder with a seeded 5-way head (no fine-tune: selection mechanics, not accuracy)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    labels = {i: str(i + 1) for i in range(5)}
    m = AutoModelForSequenceClassification.from_pretrained(
        str(minilm_path), num_labels=5, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    d = tmp_path_factory.mktemp("minilm_cls")
    m.save_pretrained(d)
    AutoTokenizer.from_pretrained(str(minilm_path)).save_pretrained(d)
    return d


def _run(main, args: list[str]) -> int:
    try:
        return main(args) or 0
    except SystemExit as e:
        return int(e.code or 0)


def test_prune_minilm_sst5_knee_and_budget(minilm_cls, shared_data, tmp_path):
    from transformers.utils import logging as hf_logging

    from cahp_edge.cli import main

    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)  # a shared, loaded 2-core box: two threads mostly wait on each other
    train = shared_data / "sst5" / "train.txt"
    small = [
        "--data",
        str(train),
        "--calib-size",
        "32",
        "--select-size",
        "48",
        "--max-length",
        "32",
        "--quiet",
    ]
    out = tmp_path / "plan"
    head_knee = ["prune", "--model", str(minilm_cls), *small, "--method", "cahp", "--out", str(out)]
    assert _run(main, head_knee) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["num_heads"] == [12] * 6 and plan["total_kept"] == plan["k_star"]
    assert plan["budget_source"] == "knee" and 4 <= plan["k_star"] <= 72
    assert plan["curve"][0]["heads"] == 72 and plan["curve"][-1]["heads"] == 4
    assert plan["selector"]["calibration_rows"] > 32 * 5  # real tokens only, several per sentence
    ds = plan["selector"]["distance_summary"]
    assert 0 < ds["min"] <= ds["mean"] <= ds["max"] <= 0.6932
    assert {"curve.png", "heads.png", "distance.png"} <= {p.name for p in out.iterdir()}

    out3 = tmp_path / "joint"  # the default: heads + FFN neurons (fisher), one cost budget
    # speedup 2 of the MACs at the calibration rows' mean length; heads and neurons share the cut
    assert _run(main, ["prune", "--model", str(minilm_cls), *small, "--speedup", "2", "--out", str(out3)]) \
        == 0
    joint = json.loads((out3 / "plan.json").read_text())
    assert joint["format"] == "cahp-plan/2" and joint["method"] == "fisher" and joint["speedup_ideal"] >= 2
    assert joint["num_neurons"] == [1536] * 6 and sum(joint["neurons_per_layer"]) < 9216
    point = joint["curve"][0]  # judged after the least-squares re-fit, masked accuracy beside it
    assert 0 <= point["accuracy"] <= 1 and 0 <= point["accuracy_masked"] <= 1

    out2 = tmp_path / "plan24"
    args = ["prune", "--model", str(minilm_cls), *small, "--method", "oneshot", "--keep-ratio", "0.33"]
    assert _run(main, [*args, "--out", str(out2)]) == 0
    assert json.loads((out2 / "plan.json").read_text())["total_kept"] == 24
