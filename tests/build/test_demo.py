"""`cahp-edge demo` wiring on a tiny base model: fine-tune + build in one lock and cache, then a cache hit."""

from __future__ import annotations

import json

import pytest

from cahp_edge.build import demo
from cahp_edge.release import package, runner
from tests.helpers.build_tiny import make_checkpoint, make_data

pytestmark = pytest.mark.slow  # end-to-end builds of a tiny model (seconds each)


def test_demo_finetunes_then_builds_and_resumes(tmp_path, monkeypatch):
    make_checkpoint(tmp_path / "base")
    make_data(tmp_path / "data")
    monkeypatch.setattr(demo, "demo_base_model", lambda: tmp_path / "base")
    monkeypatch.setattr(
        demo, "demo_data", lambda: (tmp_path / "data" / "train.tsv", tmp_path / "data" / "dev.tsv")
    )
    monkeypatch.setattr(demo, "DEMO_FINETUNE_EPOCHS", 0.5)
    quick = {
        "allow_weak_model": True,  # half an epoch on a tiny base: the gate is tested in test_gate.py
        "method": "magnitude",
        "heads": 6,
        "calib_size": 8,
        "select_size": 8,
        "recover_epochs": 0,
        "compare_dense": False,
        "max_length": 32,
        "batch_size": 8,
        "benchmark": {"runs": 3, "warmup": 0, "seq_len": 16},
    }
    out = tmp_path / "dist"
    res = demo.demo(out, targets=["x86-64-avx2"], overrides=quick)
    assert list(res.stages)[:2] == ["finetune", "data"] and not res.stages["finetune"].hit
    rel = res.releases["x86-64-avx2"]
    # 11 model/report files + the device runner package and run.py
    assert package.verify(rel.tarball, smoke=False).files_checked == 11 + len(runner.device_files())
    man = json.loads((rel.dir / "manifest.json").read_text())
    assert man["source"]["name"].startswith("all-MiniLM-L6-v2 fine-tuned")
    assert "finetune" in man["stages"]
    again = demo.demo(out, targets=["x86-64-avx2"], overrides=quick)
    assert again.recomputed == []
