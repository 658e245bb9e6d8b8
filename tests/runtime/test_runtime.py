"""Device-side runner: its JSON fields, its accuracy through padded batches, its imports, its errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.tiny_package import cached_tiny_package

REPO = Path(__file__).resolve().parents[2]
# a device has only these (plus the standard library); anything else imported would fail there
DEVICE_MODULES = {"cahp_edge", "numpy", "onnxruntime", "tokenizers", "cython_runtime"}  # cython: numpy's
BLOCKED = ["torch", "transformers", "pydantic", "typer", "rich", "onnx", "scipy", "sklearn", "pandas",
           "psutil", "safetensors", "accelerate"]

# Runs the runner with heavy packages made unimportable, then lists every non-stdlib module it loaded.
GUARD = """
import atexit, json, os, runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in json.loads(os.environ["CAHP_BLOCKED"]):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: not on a device)", name=name)
sys.meta_path.insert(0, Block())
def dump():
    mods = sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names))
    open(os.environ["CAHP_MODS_OUT"], "w").write(json.dumps(mods))
atexit.register(dump)
sys.argv = ["cahp_edge.runtime", *sys.argv[1:]]
runpy.run_module("cahp_edge.runtime", run_name="__main__")
"""


@pytest.fixture(scope="module")
def pkg(tmp_path_factory) -> Path:
    return cached_tiny_package(tmp_path_factory)


def run_runner(*args: str, guard: bool = False, mods_out: Path | None = None,
               blocked: list[str] = BLOCKED) -> subprocess.CompletedProcess:
    env = dict(os.environ, CAHP_MODS_OUT=str(mods_out or os.devnull), CAHP_BLOCKED=json.dumps(blocked))
    head = [sys.executable, "-c", GUARD] if guard else [sys.executable, "-m", "cahp_edge.runtime"]
    return subprocess.run([*head, *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def profile_json(*args: str, **kw) -> dict:
    p = run_runner("profile", *args, "--json", **kw)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_runner_imports_only_device_modules(pkg, tmp_path):
    mods = tmp_path / "mods.json"
    r = profile_json(str(pkg), "--runs", "3", "--warmup", "1", "--seq-len", "32", guard=True, mods_out=mods)
    assert r["ok"] is True
    loaded = set(json.loads(mods.read_text()))
    private = {m for m in loaded if m.startswith("_")}  # __main__, import hooks of the editable install
    assert loaded - private <= DEVICE_MODULES
    assert not loaded & set(BLOCKED)


def test_profile_json_has_every_field(pkg, tmp_path):
    logits = tmp_path / "logits.npy"
    r = profile_json(str(pkg), "--runs", "20", "--warmup", "2", "--seq-len", "32", "--batch", "2",
                     "--threads", "1", "--eval-batch-size", "7", "--nonce", "abc",
                     "--logits-out", str(logits))
    assert r["schema"] == "cahp-edge-profile/1" and r["nonce"] == "abc" and len(r["run_id"]) == 32
    lat = r["latency"]
    for k in ("cold_start_ms", "session_create_ms", "first_run_ms", "p50_ms", "p90_ms", "p99_ms",
              "throughput_per_s", "mean_ms"):
        assert lat[k] > 0, k
    assert lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["cold_start_ms"] >= lat["session_create_ms"]
    assert (lat["runs"], lat["batch"], lat["seq_len"]) == (20, 2, 32)
    assert r["memory"]["peak_rss_mb"] > 10 and r["memory"]["peak_rss_total_mb"] >= r["memory"]["peak_rss_mb"]
    m = r["model"]
    assert m["file"] == "model.onnx" and m["size_mb"] == round((pkg / "model.onnx").stat().st_size / 2**20, 3)
    assert len(m["sha256"]) == 64 and m["num_labels"] == 3
    top = r["operators"]["top"]
    assert 1 <= len(top) <= 10 and {"MatMul", "Add"} <= {o["op"] for o in top}
    assert all(o["calls"] > 0 for o in top) and sum(o["share"] for o in top) <= 1.0001
    sysinfo, rt = r["system"], r["runtime"]
    assert sysinfo["cpu_model"] and isinstance(sysinfo["cpu_flags"], list) and sysinfo["machine"]
    import onnxruntime

    assert rt["onnxruntime"] == onnxruntime.__version__ and rt["threads"] == 1
    assert rt["providers_used"] == ["CPUExecutionProvider"]
    # labels are torch's own predictions on unpadded inputs: ORT on length-sorted, per-batch padded
    # batches of 7 must reproduce every one
    acc = r["accuracy"]
    assert (acc["n"], acc["correct"], acc["accuracy"]) == (40, 40, 1.0)
    assert np.load(logits).shape == (40, 3)
    assert np.load(logits).argmax(-1).tolist() == acc["predictions"]


def test_tsv_eval_and_limit(pkg, tmp_path):
    rows = [json.loads(x) for x in (pkg / "eval.jsonl").read_text().splitlines()]
    names = ["neg", "neu", "pos"]
    tsv = tmp_path / "eval.tsv"
    tsv.write_text("label\ttext\n" + "".join(f"{names[r['label']]}\t{r['text']}\n" for r in rows))
    r = profile_json(str(pkg), "--data", str(tsv), "--limit", "10", "--no-latency", "--no-operators")
    assert r["latency"] is None and r["operators"] is None
    assert (r["accuracy"]["n"], r["accuracy"]["accuracy"]) == (10, 1.0)


def test_human_output(pkg):
    # seq 16 truncates the longer sentences (up to 22 tokens), so a few predictions change
    p = run_runner("profile", str(pkg), "--runs", "3", "--seq-len", "16", "--no-operators")
    assert p.returncode == 0, p.stderr
    assert "latency    cold" in p.stdout and "accuracy   0." in p.stdout


def test_peak_rss_is_the_runners_own(pkg):
    # started from this pytest process (torch loaded, hundreds of MB): ru_maxrss would report our peak
    r = profile_json(str(pkg), "--runs", "2", "--seq-len", "16", "--no-operators")
    assert 20 < r["memory"]["peak_rss_total_mb"] < 250


def _copy(pkg: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(pkg, dst)
    return dst


def _fails(args: list[str], code: int, kind: str, needle: str) -> None:
    p = run_runner("profile", *args, "--json", "--nonce", "n1")
    assert p.returncode == code, p.stderr
    err = json.loads(p.stdout)
    assert err["ok"] is False and err["nonce"] == "n1" and err["error"]["kind"] == kind
    assert needle in err["error"]["message"]
    assert p.stderr.startswith("error: ") and needle in p.stderr and p.stderr.count("\n") == 1


def test_missing_tokenizer(pkg, tmp_path):
    d = _copy(pkg, tmp_path)
    (d / "tokenizer.json").unlink()
    _fails([str(d)], 1, "package", "missing tokenizer.json")


def test_checksum_mismatch(pkg, tmp_path):
    from cahp_edge.fsutil import sha256_file

    d = _copy(pkg, tmp_path)
    sums = "".join(f"{sha256_file(d / n)}  {n}\n" for n in ("model.onnx", "config.json"))
    (d / "SHA256SUMS").write_text(sums)
    assert run_runner("profile", str(d), "--runs", "2", "--seq-len", "8", "--no-operators").returncode == 0
    with open(d / "config.json", "a") as f:
        f.write(" ")
    _fails([str(d)], 1, "package", "checksum mismatch: config.json")
    (d / "model.onnx").unlink()
    _fails([str(d)], 1, "package", "missing: model.onnx")


def test_truncated_model(pkg, tmp_path):
    d = _copy(pkg, tmp_path)
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 2])
    _fails([str(d)], 1, "model", "ONNX Runtime cannot load")


def test_bad_label(pkg, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"label": 0, "text": "w1"}\n{"label": "angry", "text": "w2"}\n')
    _fails([str(pkg), "--data", str(bad)], 1, "data", "label 'angry' is not one of the model's labels")


def test_seq_len_beyond_model(pkg):
    _fails([str(pkg), "--seq-len", "500"], 2, "usage", "--seq-len 500 is longer than the model accepts")


def test_missing_package(tmp_path):
    _fails([str(tmp_path / "nope")], 1, "package", "not found")


def test_ort_format_model(pkg, tmp_path):
    import onnxruntime as ort

    d = tmp_path / "mobile"
    d.mkdir()
    for n in ("tokenizer.json", "config.json", "eval.jsonl"):
        shutil.copy(pkg / n, d / n)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(d / "model.ort")
    so.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(pkg / "model.onnx"), so, providers=["CPUExecutionProvider"])
    r = profile_json(str(d), "--runs", "3", "--seq-len", "32", "--no-operators")
    assert (r["model"]["file"], r["model"]["format"], r["accuracy"]["accuracy"]) == ("model.ort", "ort", 1.0)


@pytest.mark.parametrize("missing", ["onnxruntime", "numpy", "tokenizers"])
def test_device_without_a_dependency(pkg, missing):
    p = run_runner("profile", str(pkg), "--json", "--nonce", "n2", guard=True, blocked=[*BLOCKED, missing])
    assert p.returncode == 1
    err = json.loads(p.stdout)["error"]
    assert err["kind"] == "runtime" and f"python module '{missing}' is not installed" in err["message"]
    assert "pip install onnxruntime numpy tokenizers" in p.stderr and p.stderr.count("\n") == 1


def test_disabled_optimizers_reach_the_session(pkg, tmp_path, monkeypatch):
    # every session the runner opens gets the target's disabled_optimizers (from the release's
    # target.json, or --disabled-optimizers); and ORT really drops the rewrite when given the name
    import onnxruntime as ort

    from cahp_edge.runtime.profile import Settings, profile_package

    seen, real = [], ort.InferenceSession

    def spy(*a, **k):
        seen.append(k.get("disabled_optimizers"))
        return real(*a, **k)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    copy = tmp_path / "pkg"
    shutil.copytree(pkg, copy)
    target = json.loads((copy / "target.json").read_text()) if (copy / "target.json").is_file() else {}
    (copy / "target.json").write_text(json.dumps(target | {"disabled_optimizers": ["MatmulTransposeFusion"]}))
    (copy / "SHA256SUMS").unlink(missing_ok=True)
    quick = dict(runs=2, warmup=0, seq_len=16, limit=4, profile_runs=1)
    r = profile_package(copy, Settings(**quick))
    assert r["runtime"]["disabled_optimizers"] == ["MatmulTransposeFusion"]
    assert seen == [["MatmulTransposeFusion"]] * 2  # the timed session and the profiling one
    seen.clear()
    r = profile_package(copy, Settings(**quick, disabled_optimizers=[]))  # the command line wins
    assert r["runtime"]["disabled_optimizers"] == [] and seen == [[], []]
    monkeypatch.undo()

    def fused_ops(disabled):
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / "opt.onnx")
        ort.InferenceSession(str(pkg / "model.onnx"), so, providers=["CPUExecutionProvider"],
                             disabled_optimizers=disabled)
        import onnx

        return {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}

    assert "FusedMatMul" in fused_ops([])
    assert "FusedMatMul" not in fused_ops(["MatmulTransposeFusion", "MatMulScaleFusion"])
