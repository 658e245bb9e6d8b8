"""End to end on a tiny BERT: two targets, verify both, cache hit on re-run, --force, SIGTERM + resume."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cahp_edge.build.cache import CACHE_DIR
from cahp_edge.build.options import make_options
from cahp_edge.build.pipeline import build
from cahp_edge.fsutil import sha256_file
from cahp_edge.model.load import checkpoint_hash
from cahp_edge.release import package
from tests.helpers.build_tiny import TINY_CONFIG, make_checkpoint, make_data

pytestmark = pytest.mark.slow  # end-to-end builds of a tiny model (seconds each)

TARGETS = ["x86-64-avx2", "rpi5-arm64"]
# files whose bytes depend only on the inputs (not on timings or the clock)
DETERMINISTIC = (
    "model.onnx",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "eval.jsonl",
    "target.json",
)
REPO = Path(__file__).resolve().parents[2]


def _opts(root: Path, out: Path, **extra):
    cli = {
        "model": str(root / "ck"),
        "data": str(root / "data" / "train.tsv"),
        "eval": str(root / "data" / "dev.tsv"),
        "targets": TARGETS,
        "out": str(out),
        **extra,
    }
    return make_options(cli, root / "build.toml")


def _digest(d: Path) -> dict[str, str]:
    return {n: sha256_file(d / n) for n in DETERMINISTIC if (d / n).is_file()}


def _kept(d: Path) -> list:
    return json.loads((d / "cahp_heads.json").read_text())["kept"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("build")
    make_checkpoint(root / "ck")
    make_data(root / "data")
    (root / "build.toml").write_text(TINY_CONFIG)
    res = build(_opts(root, root / "dist"))
    ref = {t: (_digest(root / "dist" / t), _kept(root / "dist" / t)) for t in TARGETS}
    return root, res, ref


def test_two_releases_verify_with_smoke_inference(built):
    root, res, _ = built
    assert sorted(res.releases) == sorted(TARGETS)
    assert "prune" in res.stages and "package:rpi5-arm64" in res.stages
    for t in TARGETS:
        d, tar = root / "dist" / t, root / "dist" / f"{t}.tar.gz"
        names = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}
        assert {
            "model.onnx",
            "tokenizer.json",
            "config.json",
            "cahp_heads.json",
            "manifest.json",
            "metrics.json",
            "MODEL_CARD.md",
            "report.html",
            "SHA256SUMS",
            "eval.jsonl",
            "target.json",
            "run.py",
            "cahp_edge_runtime/__main__.py",
        } <= names
        r = package.verify(tar, smoke=True)
        assert r.target == t and r.files_checked == len(names) - 1
        assert r.smoke["ok"] and r.smoke["n"] == 16  # every bundled eval row
        assert abs(r.smoke["accuracy"] - r.smoke["expected_accuracy"]) <= package.SMOKE_ACCURACY_TOLERANCE
        assert sum(len(k) for k in _kept(d)) == 7  # heads = 7 in the tiny config


def test_manifest_lineage_and_hashes(built):
    root, res, _ = built
    for t in TARGETS:
        d = root / "dist" / t
        man = json.loads((d / "manifest.json").read_text())
        for name, entry in man["files"].items():
            assert entry["sha256"] == sha256_file(d / name), name
        assert man["source"]["checkpoint_sha256"] == checkpoint_hash(root / "ck")
        assert man["target"] == t and man["target_profile"]["name"] == t
        assert man["build_host"]["cpu"] and man["versions"]["onnxruntime"]
        stages = man["stages"]
        assert {
            "data",
            "prune",
            "reshape",
            "recover",
            "export:17",
            "optimize:17",
            f"quantize:{t}",
            f"validate:{t}",
        } <= set(stages)
        other = next(x for x in TARGETS if x != t)
        assert f"quantize:{other}" not in stages  # lineage of this target only
        assert stages["prune"]["key"] == res.stages["prune"].key
        assert stages["prune"]["inputs"]["checkpoint"] == man["source"]["checkpoint_sha256"]
        assert man["options"]["seed"] == 0 and man["options"]["heads"] == 7


def test_metrics_compare_dense_pruned_shipped(built):
    root, _, _ = built
    m = json.loads((root / "dist" / "x86-64-avx2" / "metrics.json").read_text())
    assert set(m["models"]) == {"dense", "pruned", "shipped"}
    for row in m["models"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and row["eval_examples"] == 16
        assert row["latency_ms"]["p50"] > 0 and row["latency_ms"]["p99"] >= row["latency_ms"]["p50"]
        assert row["size_mb"] > 0 and row["peak_memory_mb"] > 0
    assert (
        m["models"]["shipped"]["size_mb"] < m["models"]["pruned"]["size_mb"] < m["models"]["dense"]["size_mb"]
    )
    # the verdict follows from its checks (was: any status accepted): fail iff a check failed,
    # incomplete iff one was skipped (with its reason), every measured check has a value and a limit
    checks = m["budgets"]["checks"]
    assert checks and all(c["status"] in ("pass", "fail", "skip") for c in checks)
    assert all(c["reason"] for c in checks if c["status"] == "skip")
    assert all(c["value"] is not None and c["limit"] is not None for c in checks if c["status"] != "skip")
    statuses = {c["status"] for c in checks}
    want = "fail" if "fail" in statuses else ("incomplete" if "skip" in statuses else "pass")
    assert m["budgets"]["status"] == want
    assert m["budgets"]["failed"] == [c["budget"] for c in checks if c["status"] == "fail"]
    arm = json.loads((root / "dist" / "rpi5-arm64" / "metrics.json").read_text())
    # measured on x86: the latency budget of an ARM target is not checked, and says why
    p90 = next(c for c in arm["budgets"]["checks"] if c["budget"] == "p90_latency_ms")
    assert p90["status"] == "skip" and "not device latency" in p90["reason"]


def test_report_is_self_contained_with_plots(built):
    root, _, _ = built
    html = (root / "dist" / "x86-64-avx2" / "report.html").read_text()
    imgs = html.split("data:image/png;base64,")[1:]
    assert len(imgs) >= 2  # heatmap + bars (a fixed budget has no sweep curve to fit)
    for chunk in imgs:
        assert base64.b64decode(chunk.split("'")[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html and "<script" not in html
    card = (root / "dist" / "x86-64-avx2" / "MODEL_CARD.md").read_text()
    assert "12 -> 7" in card and "| pruned + quantized (shipped) |" in card


def test_rerun_is_a_cache_hit(built):
    root, _, _ = built

    def stamp():
        return {
            p: p.stat().st_mtime_ns
            for p in (root / "dist").rglob("*")
            if CACHE_DIR not in p.parts and p.name != ".cahp-build.lock"
        }

    before = stamp()
    res = build(_opts(root, root / "dist"))
    assert res.recomputed == []
    assert all(r.hit for r in res.stages.values())
    assert stamp() == before  # releases untouched


def test_force_recomputes_and_reproduces(built):
    root, _, ref = built
    res = build(_opts(root, root / "dist"), force=True)
    assert not any(r.hit for r in res.stages.values())
    for t in TARGETS:
        assert _digest(root / "dist" / t) == ref[t][0]
        assert _kept(root / "dist" / t) == ref[t][1]


def test_sigterm_during_a_stage_then_resume_gives_the_same_package(built):
    root, _, ref = built
    out = root / "dist-interrupted"
    cmd = [
        sys.executable,
        "-m",
        "cahp_edge",
        "build",
        "--model",
        str(root / "ck"),
        "--data",
        str(root / "data" / "train.tsv"),
        "--eval",
        str(root / "data" / "dev.tsv"),
        "--out",
        str(out),
        "--config",
        str(root / "build.toml"),
        *[a for t in TARGETS for a in ("--target", t)],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    seen = []
    for line in p.stderr:  # kill once "data" finished, i.e. while prune runs
        seen.append(line)
        if line.startswith("data:"):
            time.sleep(0.5)
            p.send_signal(signal.SIGTERM)
            break
    rest = p.stderr.read()
    assert p.wait(timeout=120) == 130, "".join(seen) + rest
    assert "interrupted" in rest
    assert not any((out / t).exists() for t in TARGETS)  # no release, complete or partial
    cache = out / CACHE_DIR
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # temp folders removed
    assert any(p.name.startswith("data-") for p in cache.iterdir())  # the finished stage is kept
    res = build(_opts(root, out))
    assert res.stages["data"].hit and not res.stages["prune"].hit
    for t in TARGETS:
        assert _digest(out / t) == ref[t][0]
        assert _kept(out / t) == ref[t][1]


def test_verify_cli_ok_and_tampered(built, tmp_path):
    root, _, _ = built
    tar = root / "dist" / "x86-64-avx2.tar.gz"
    r = subprocess.run(
        [sys.executable, "-m", "cahp_edge", "verify", str(tar), "--json", "--no-smoke"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True
    import shutil

    bad = tmp_path / "pkg"
    shutil.copytree(root / "dist" / "x86-64-avx2", bad)
    (bad / "model.onnx").write_bytes(b"\0" * 10)
    r = subprocess.run(
        [sys.executable, "-m", "cahp_edge", "verify", str(bad)], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "1 changed (model.onnx)" in r.stderr
