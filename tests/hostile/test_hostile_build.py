"""Hostile `cahp-edge build` invocations: each fails before any stage runs, and a previous release survives.

A "previous release" here is written with package.write_release into the same dist/ folder; after the
failing build its folder and tarball must hash the same and no temporary folder may be left anywhere.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cahp_edge.release import package
from tests.hostile.support import fails, snapshot

TARGET = "x86-64-avx2"


@pytest.fixture
def dist(onnx_pkg, tmp_path) -> Path:
    files = {p.name: p for p in onnx_pkg.iterdir() if p.is_file()}
    package.write_release(tmp_path / "dist", TARGET, files, {"stages": {"note": "previous release"}})
    return tmp_path / "dist"


def _releases(dist: Path) -> dict:
    return {k: v for k, v in snapshot(dist).items() if k.startswith(TARGET)}


def assert_no_partials(root: Path) -> None:
    left = [k for k in snapshot(root) if k.rsplit("/", 1)[-1].endswith(".partial") or ".old-" in k]
    assert left == [], f"temporary output left behind: {left}"


def _build(ckpt, data, dist, *extra) -> list:
    return [
        "build",
        "-q",
        "--model",
        ckpt,
        "--data",
        data / "train.tsv",
        "--eval",
        data / "dev.tsv",
        "--out",
        dist,
        *extra,
    ]


def _fails_keeping_release(argv, capsys, msg, dist, code=1) -> str:
    before = _releases(dist)
    line = fails(argv, capsys, msg, code)
    assert _releases(dist) == before, "the previous release changed"
    assert_no_partials(dist.parent)
    return line


def test_no_target(ckpt, tiny_data, dist, capsys):
    _fails_keeping_release(
        _build(ckpt, tiny_data, dist), capsys, ["no target given", "--target"], dist, code=2
    )


def test_unknown_target(ckpt, tiny_data, dist, capsys):
    line = _fails_keeping_release(
        _build(ckpt, tiny_data, dist, "--target", "pi-zero"), capsys, "unknown target 'pi-zero'", dist
    )
    assert TARGET in line


def test_model_and_data_labels_disagree(ckpt, tmp_path, dist, capsys):
    from tests.helpers.build_tiny import make_data

    data = make_data(tmp_path / "abc", labels=("neg", "pos", "meh"))
    (data / "train.tsv").write_text((data / "train.tsv").read_text() + "so so\tmeh\n")
    _fails_keeping_release(
        _build(ckpt, data, dist, "--target", TARGET),
        capsys,
        ["['meh']", "not in the model's label set"],
        dist,
    )


def test_model_folder_missing(tmp_path, tiny_data, dist, capsys):
    _fails_keeping_release(
        _build(tmp_path / "nope", tiny_data, dist, "--target", TARGET), capsys, "model folder not found", dist
    )


def test_out_is_a_file(ckpt, tiny_data, tmp_path, capsys):
    f = tmp_path / "dist"
    f.write_text("not a folder")
    before = snapshot(tmp_path)
    fails(_build(ckpt, tiny_data, f, "--target", TARGET), capsys, "output folder", 1)
    assert snapshot(tmp_path) == before


def test_out_not_writable(ckpt, tiny_data, tmp_path, capsys):
    import os

    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions; the file case above covers the message")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    fails(_build(ckpt, tiny_data, ro / "dist", "--target", TARGET), capsys, "output folder", 1)


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("turbo = true\n", "unknown option 'turbo'"),
        ("degree = 42\n", "'degree'"),
        ("heads = 4\nkeep_ratio = 0.5\n", "--heads and --keep-ratio both given"),
        ("degree = 3\nseed = \n", "not valid TOML"),
        ("[build]\ndegree = 3\n[other]\nx = 1\n", "outside [build]"),
        ("[benchmark]\nruns = 0\n", "benchmark.runs"),
    ],
    ids=[
        "unknown key",
        "degree out of range",
        "heads and keep_ratio",
        "invalid TOML",
        "keys outside [build]",
        "zero benchmark runs",
    ],
)
def test_bad_build_config(text, msg, ckpt, tiny_data, tmp_path, dist, capsys):
    cfg = tmp_path / "build.toml"
    cfg.write_text(text)
    _fails_keeping_release(
        _build(ckpt, tiny_data, dist, "--target", TARGET, "--config", cfg), capsys, msg, dist, code=2
    )


def test_second_build_on_locked_out(ckpt, tiny_data, dist, capsys):
    """Two builds on one dist/: the second is refused at once with the holder's pid."""
    holder = textwrap.dedent(f"""
        import time
        from cahp_edge.build.cache import build_lock
        with build_lock({str(dist)!r}):
            print("locked", flush=True)
            time.sleep(120)
    """)
    p = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        _fails_keeping_release(
            _build(ckpt, tiny_data, dist, "--target", TARGET),
            capsys,
            ["another cahp-edge build is writing to", f"pid {p.pid}", "another --out"],
            dist,
        )
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize(
    ("flags", "msg"),
    [
        (["--speedup", "0.5"], "option 'speedup': Input should be greater than or equal to 1 (got 0.5)"),
        (["--speedup", "2", "--heads", "4"], "--heads and --speedup both given"),
        (["--units", "heads+neurons", "--method", "michel"], "--method michel selects attention heads only"),
        (["--units", "heads", "--latency-budget-ms", "5"], "--latency-budget-ms budgets heads and FFN"),
        (["--units", "heads+neurons", "--keep-ratio", "0.5"], "--units heads+neurons budgets cost"),
        (["--latency-budget-ms", "0"], "option 'latency_budget_ms': Input should be greater than 0"),
    ],
    ids=["speedup below 1", "speedup and heads", "head method with neurons", "latency budget for heads",
         "keep ratio with neurons", "zero latency budget"],
)
def test_bad_budget_flags(flags, msg, ckpt, tiny_data, dist, capsys):
    """Budget flags that cannot work are usage errors before the first stage (issue 15's bad input)."""
    argv = _build(ckpt, tiny_data, dist, "--target", TARGET, *flags)
    _fails_keeping_release(argv, capsys, msg, dist, code=2)
