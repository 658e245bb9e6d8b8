"""validate: every field measured on a tiny exported model; budgets pass and fail as configured; stale or
foreign results from a device are refused; remote devices are dispatched to cahp_edge.targets.remote."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from cahp_edge.errors import DeviceError, PackageError, UsageError, ValidateError
from cahp_edge.targets.validate import run_local_profile, validate
from tests.helpers.tiny_package import cached_tiny_package

REPO = Path(__file__).resolve().parents[2]
FAST = dict(runs=20, warmup=2)


@pytest.fixture(scope="module")
def pkg(tmp_path_factory) -> Path:
    return cached_tiny_package(tmp_path_factory)


def write_target(tmp_path: Path, base: str = "host", name: str = "tiny", **budgets) -> Path:
    """A shipped profile with the tiny model's benchmark shape (it has 64 positions) and given budgets."""
    text = (REPO / "targets" / f"{base}.toml").read_text()
    text = text.replace(f'name = "{base}"', f'name = "{name}"').replace("seq_len = 128", "seq_len = 32")
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        if key in budgets:
            line = f"{key} = {float(budgets[key])!r}"
        elif key == "threads":
            line = "threads = 1"
        lines.append(line)
    p = tmp_path / f"{name}.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_pass_with_every_field(pkg, tmp_path):
    tgt = write_target(tmp_path, max_accuracy_drop=0.0, p90_latency_ms=1000, max_size_mb=1,
                       max_peak_memory_mb=500)
    rep = validate(pkg / "model.onnx", tgt, baseline_accuracy=1.0, **FAST)
    assert rep.status == "pass" and rep.passed
    assert [(c.name, c.status) for c in rep.checks] == [("accuracy_drop", "pass"), ("p90_latency_ms", "pass"),
                                                        ("size_mb", "pass"), ("peak_memory_mb", "pass")]
    assert (rep.accuracy, rep.baseline_accuracy, rep.accuracy_drop) == (1.0, 1.0, 0.0)
    p = rep.profile
    assert p["latency"]["runs"] == 20 and p["latency"]["seq_len"] == 32 and p["latency"]["cold_start_ms"] > 0
    assert p["runtime"]["threads"] == 1 and p["runtime"]["onnxruntime"] and p["system"]["cpu_flags"]
    assert p["operators"]["top"] and p["memory"]["peak_rss_mb"] > 0 and p["model"]["size_mb"] > 0
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["status"] == "pass" and d["checks"][1]["measured"] == p["latency"]["p90_ms"]
    table = rep.table()
    assert "p90_latency_ms   PASS" in table and table.endswith("result: PASS")
    assert f"measured on {p['system']['machine']} via local)" in table  # where, and nothing more: on target
    assert "; length-sorted batches of 16, each padded to its longest row" in table


def test_latency_off_the_target_says_where_it_was_measured(pkg, tmp_path):
    """An ARM profile validated on this x86 host: the latency line says it is not the device's."""
    tgt = write_target(tmp_path, base="rpi5-arm64", name="arm", p90_latency_ms=1000)
    rep = validate(pkg, tgt, baseline_accuracy=1.0, **FAST)
    lat = next(c for c in rep.checks if c.name == "p90_latency_ms")
    assert lat.status == "skip" and lat.measured == rep.profile["latency"]["p90_ms"]
    machine = rep.profile["system"]["machine"]
    assert f"measured on {machine} via local, not on the arm device)" in rep.table()


def test_budgets_fail_as_configured(pkg, tmp_path):
    tgt = write_target(tmp_path, p90_latency_ms=0.0001, max_size_mb=0.01, max_peak_memory_mb=5000)
    rep = validate(pkg, tgt, baseline_accuracy=1.0, **FAST)
    status = {c.name: c.status for c in rep.checks}
    assert status == {"accuracy_drop": "pass", "p90_latency_ms": "fail", "size_mb": "fail",
                      "peak_memory_mb": "pass"}
    assert rep.status == "fail" and not rep.passed
    size = next(c for c in rep.checks if c.name == "size_mb")
    assert size.measured == rep.profile["model"]["size_mb"] and "larger than the budget" in size.reason


def _relabelled(pkg: Path, tmp_path: Path, wrong_every: int) -> Path:
    """The eval rows as a GLUE-style tsv (label names), every `wrong_every`-th label changed."""
    names = ["neg", "neu", "pos"]
    rows = [json.loads(x) for x in (pkg / "eval.jsonl").read_text().splitlines()]
    out = tmp_path / "dev.tsv"
    lines = ["sentence\tlabel"]
    for i, r in enumerate(rows):
        y = (r["label"] + 1) % 3 if i % wrong_every == 0 else r["label"]
        lines.append(f"{r['text']}\t{names[y]}")
    out.write_text("\n".join(lines) + "\n")
    return out


def test_accuracy_drop_fails_then_reference_sets_baseline(pkg, tmp_path):
    data = _relabelled(pkg, tmp_path, wrong_every=4)  # rows 0, 4, ... 36: 10 of 40 wrong
    tgt = write_target(tmp_path, max_accuracy_drop=0.05)
    rep = validate(pkg, tgt, data=data, baseline_accuracy=1.0, **FAST)
    acc = next(c for c in rep.checks if c.name == "accuracy_drop")
    assert (rep.accuracy, acc.status, acc.measured) == (0.75, "fail", 0.25)
    # the same model as reference on the same data: no drop
    before = {p.name: p.read_bytes() for p in pkg.iterdir()}
    rep = validate(pkg, tgt, data=data, reference=pkg, **FAST)
    acc = next(c for c in rep.checks if c.name == "accuracy_drop")
    assert (rep.baseline_accuracy, acc.status, acc.measured) == (0.75, "pass", 0.0)
    assert {p.name: p.read_bytes() for p in pkg.iterdir()} == before  # the user's package is never written


def test_no_data_or_baseline_is_incomplete_not_pass(pkg, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for n in ("model.onnx", "tokenizer.json", "config.json"):
        shutil.copy(pkg / n, bare / n)
    rep = validate(bare, write_target(tmp_path), **FAST)
    acc = rep.checks[0]
    assert acc.status == "skip" and "no evaluation data" in acc.reason
    assert rep.status == "incomplete" and not rep.passed and rep.accuracy is None


def test_arm_target_measured_here_skips_latency(pkg, tmp_path):
    tgt = write_target(tmp_path, base="rpi4-arm64", name="pi")
    rep = validate(pkg, tgt, baseline_accuracy=1.0, **FAST)
    lat = next(c for c in rep.checks if c.name == "p90_latency_ms")
    assert lat.status == "skip" and "not device latency" in lat.reason
    assert any("target is aarch64" in n for n in rep.notes)
    assert rep.profile["runtime"]["threads"] == 1


def test_bad_inputs(pkg, tmp_path):
    tgt = write_target(tmp_path)
    with pytest.raises(UsageError, match="not found"):
        validate(tmp_path / "nope", tgt)
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(pkg / "model.onnx", half / "model.onnx")
    with pytest.raises(PackageError, match=r"lacks tokenizer\.json, config\.json"):
        validate(half, tgt)
    with pytest.raises(UsageError, match="baseline-accuracy"):
        validate(pkg, tgt, baseline_accuracy=91.0)


def _fake_remote(monkeypatch, fn):
    mod = types.ModuleType("cahp_edge.targets.remote")
    mod.run_remote_profile = fn
    monkeypatch.setitem(sys.modules, "cahp_edge.targets.remote", mod)


def test_remote_device_is_dispatched_with_a_copied_package(pkg, tmp_path, monkeypatch):
    seen = {}

    def run_remote_profile(device, package_dir, args, timeout):
        seen.update(device=device, links=[p.name for p in package_dir.iterdir() if p.is_symlink()])
        return run_local_profile(package_dir, args, timeout)

    _fake_remote(monkeypatch, run_remote_profile)
    rep = validate(pkg, write_target(tmp_path), device="ssh://pi@raspberrypi", baseline_accuracy=1.0, **FAST)
    assert seen == {"device": "ssh://pi@raspberrypi", "links": []}  # real files: scp/adb push copy them
    assert rep.device == "ssh://pi@raspberrypi" and rep.accuracy == 1.0


def test_stale_or_foreign_results_are_refused(pkg, tmp_path, monkeypatch):
    tgt = write_target(tmp_path)
    old = {}

    def first(device, package_dir, args, timeout):
        old.update(run_local_profile(package_dir, args, timeout))
        return old

    _fake_remote(monkeypatch, first)
    validate(pkg, tgt, device="adb://emulator-5554", **FAST)
    _fake_remote(monkeypatch, lambda *a: old)  # a device that answers with the previous run's JSON
    with pytest.raises(ValidateError, match="result from another run"):
        validate(pkg, tgt, device="adb://emulator-5554", **FAST)

    def other_model(device, package_dir, args, timeout):
        r = run_local_profile(package_dir, args, timeout)
        r["model"]["sha256"] = "0" * 64
        return r

    _fake_remote(monkeypatch, other_model)
    with pytest.raises(ValidateError, match="measured a different model"):
        validate(pkg, tgt, device="adb://emulator-5554", **FAST)


def test_remote_without_remote_module(pkg, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cahp_edge.targets.remote", None)
    with pytest.raises(DeviceError, match="needs remote support"):
        validate(pkg, write_target(tmp_path), device="ssh://pi@host", **FAST)


def cli(argv: list[str]) -> int:
    from cahp_edge.cli import main

    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_cli_json_table_and_exit_codes(pkg, tmp_path, capsys):
    ok = write_target(tmp_path, name="ok")
    assert cli(["validate", str(pkg), "--target", str(ok), "--baseline-accuracy", "1.0", "--runs", "10",
                "--json", "-q"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["status"] == "pass" and d["profile"]["latency"]["p99_ms"] > 0 and len(d["checks"]) == 4
    bad = write_target(tmp_path, name="bad", max_size_mb=0.01)
    assert cli(["validate", str(pkg), "--target", str(bad), "--runs", "10"]) == 1
    out, err = capsys.readouterr()
    assert "size_mb          FAIL" in out and "result: FAIL" in out
    assert err.splitlines()[-1].startswith("error: ") and "misses target bad's budgets: size_mb" in err
    assert cli(["validate", str(pkg), "--target", "rpi3"]) == 1
    assert "unknown target 'rpi3'" in capsys.readouterr().err


def test_emulated_arm_accuracy_drives_the_accuracy_check(pkg, tmp_path, monkeypatch):
    from cahp_edge.targets import emulate

    seen = {}

    class FakeComparison:
        def to_dict(self):
            return {"cpu": seen["cpu"], "accuracy_arm": 0.9, "accuracy_x86": 1.0, "argmax_agreement": 0.9,
                    "max_abs_logit_diff": 0.2, "n": seen["n"]}

    def compare_with_host(model, examples, labels, cpu, pad_id, timeout):
        seen.update(cpu=cpu, n=len(examples), keys=sorted(examples[0]), model=Path(model).name)
        return FakeComparison()

    monkeypatch.setattr(emulate, "compare_with_host", compare_with_host)
    tgt = write_target(tmp_path, base="rpi5-arm64", name="pi5", max_accuracy_drop=0.05)
    rep = validate(pkg, tgt, baseline_accuracy=1.0, emulate=True, **FAST)
    assert seen == {"cpu": "cortex-a76", "n": 40, "keys": ["attention_mask", "input_ids", "token_type_ids"],
                    "model": "model.onnx"}
    acc = rep.checks[0]
    assert (rep.accuracy, acc.status, acc.measured) == (0.9, "fail", 0.1)
    assert rep.emulation["cpu"] == "cortex-a76" and "arm emulated  cortex-a76" in rep.table()
    with pytest.raises(UsageError, match="for aarch64 targets"):
        validate(pkg, write_target(tmp_path), emulate=True, **FAST)


def test_android_providers_missing_here_are_noted(pkg, tmp_path):
    rep = validate(pkg, write_target(tmp_path, base="android-arm64", name="phone"), **FAST)
    assert rep.profile["runtime"]["providers_requested"][:2] == ["XnnpackExecutionProvider",
                                                                  "NnapiExecutionProvider"]
    assert rep.profile["runtime"]["providers_used"] == ["CPUExecutionProvider"]
    assert any("XnnpackExecutionProvider" in n and "skipped" in n for n in rep.notes)


PAIR_ROWS = [("neg", "a first text", "its pair"), ("pos", "another one", "and its pair"),
             ("neu", "third", "pair 3")]


def _jsonl() -> str:
    return "".join(json.dumps({"label": y, "text": a, "text_pair": b}) + "\n" for y, a, b in PAIR_ROWS)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("eval.jsonl", _jsonl()),
        ("eval.tsv", "label\ttext\ttext_pair\n" + "".join(f"{y}\t{a}\t{b}\n" for y, a, b in PAIR_ROWS)),
    ],
    ids=["runner jsonl", "runner tsv"],
)
def test_runner_eval_formats_keep_their_pairs_through_validate(pkg, tmp_path, name, text):
    """Every eval format the runner reads is read back as pairs by the one loader, so `validate --data`
    (and the build's validate stage, which passes its eval.jsonl) scores sentence pairs, not text alone."""
    from cahp_edge.data import load_dataset
    from cahp_edge.runtime.package import EVAL_NAMES, load_eval
    from cahp_edge.targets.profile import load_target
    from cahp_edge.targets.validate import stage_package

    src = tmp_path / name
    src.write_text(text)
    ds = load_dataset(src)
    assert ds.pairs == [b for _, _, b in PAIR_ROWS] and ds.texts == [a for _, a, _ in PAIR_ROWS]
    staged = stage_package(pkg, load_target("host"), src, tmp_path / "staged", copy=True)
    (evf,) = [staged / n for n in EVAL_NAMES if (staged / n).is_file()]
    id2label = {int(k): v for k, v in json.loads((pkg / "config.json").read_text())["id2label"].items()}
    seen = load_eval(evf, id2label)  # what the runner scores
    assert list(zip(seen.texts, seen.pairs, strict=True)) == [(a, b) for _, a, b in PAIR_ROWS]
    assert evf.read_bytes() == src.read_bytes()  # the runner's own format is scored as it is, not rewritten
