"""Bad input to `cahp-edge build`: one line, non-zero exit, nothing written; stale caches; kept releases."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cahp_edge.build import stages as build_stages
from cahp_edge.build.options import make_options
from cahp_edge.build.pipeline import build
from cahp_edge.errors import OutputError, UsageError, ValidateError
from cahp_edge.fsutil import sha256_file
from cahp_edge.model.load import checkpoint_hash
from cahp_edge.release import package
from tests.helpers.build_tiny import make_checkpoint, make_data

pytestmark = pytest.mark.slow  # end-to-end builds of a tiny model (seconds each)

REPO = Path(__file__).resolve().parents[2]
FAST = """
allow_weak_model = true
method = "magnitude"
heads = 6
calib_size = 8
select_size = 8
recover_epochs = 0
compare_dense = false
max_length = 32
[benchmark]
runs = 3
warmup = 0
seq_len = 16
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    make_checkpoint(root / "ckA", seed=0)
    make_checkpoint(root / "ckB", seed=1)
    make_data(root / "data")
    make_data(root / "bad", labels=("neg", "pos", "meh"))
    (root / "bad" / "train.tsv").write_text((root / "bad" / "train.tsv").read_text() + "so so\tmeh\n")
    (root / "fast.toml").write_text(FAST)
    return root


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cahp_edge", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def _one_line_error(r: subprocess.CompletedProcess, code: int, *subs: str) -> None:
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for s in subs:
        assert s in lines[0], lines[0]


def test_no_target_is_a_usage_error(tiny, tmp_path):
    r = _cli(
        "build",
        "--model",
        str(tiny / "ckA"),
        "--data",
        str(tiny / "data" / "train.tsv"),
        "--out",
        str(tmp_path / "out"),
    )
    _one_line_error(r, 2, "no target given", "rpi5-arm64")
    assert not (tmp_path / "out").exists()


def test_unknown_target_lists_known_ones(tiny, tmp_path):
    r = _cli(
        "build",
        "--model",
        str(tiny / "ckA"),
        "--data",
        str(tiny / "data" / "train.tsv"),
        "--target",
        "pi-zero",
        "--out",
        str(tmp_path / "out"),
    )
    _one_line_error(r, 1, "unknown target 'pi-zero'", "known targets:", "x86-64-avx2")
    assert not (tmp_path / "out").exists()


def test_labels_that_disagree_with_the_model(tiny, tmp_path):
    r = _cli(
        "build",
        "--model",
        str(tiny / "ckA"),
        "--data",
        str(tiny / "bad" / "train.tsv"),
        "--target",
        "x86-64-avx2",
        "--out",
        str(tmp_path / "out"),
    )
    _one_line_error(r, 1, "labels ['meh']", "not in the model's label set")
    assert not (tmp_path / "out").exists()


def test_unwritable_output_and_unknown_config_key(tiny, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = _cli(
        "build",
        "--model",
        str(tiny / "ckA"),
        "--data",
        str(tiny / "data" / "train.tsv"),
        "--target",
        "x86-64-avx2",
        "--out",
        str(f / "dist"),
        "--config",
        str(tiny / "fast.toml"),
    )
    _one_line_error(r, 1, "cannot write to output folder")
    cfg = tmp_path / "bad.toml"
    cfg.write_text("degre = 3\n")
    r = _cli(
        "build",
        "--model",
        str(tiny / "ckA"),
        "--data",
        str(tiny / "data" / "train.tsv"),
        "--target",
        "x86-64-avx2",
        "--config",
        str(cfg),
    )
    _one_line_error(r, 2, "unknown option 'degre'")
    with pytest.raises(UsageError, match="--heads and --keep-ratio both given"):
        make_options({"model": "m", "data": "d", "heads": 3, "keep_ratio": 0.5})


def _opts(tiny: Path, model: str, out: Path):
    return make_options(
        {
            "model": str(tiny / model),
            "data": str(tiny / "data" / "train.tsv"),
            "eval": str(tiny / "data" / "dev.tsv"),
            "targets": ["x86-64-avx2"],
            "out": str(out),
        },
        tiny / "fast.toml",
    )


def _snapshot(d: Path) -> dict:
    return {
        p.relative_to(d).as_posix(): sha256_file(p)
        for p in d.rglob("*")
        if p.is_file() and ".cahp-cache" not in p.parts and p.name != ".cahp-build.lock"
    }


def test_cache_of_another_model_is_never_reused_and_failures_keep_the_release(tiny, tmp_path, monkeypatch):
    out = tmp_path / "dist"
    a = build(_opts(tiny, "ckA", out))
    b = build(_opts(tiny, "ckB", out))  # same folder, same options, other weights
    assert not any(r.hit for n, r in b.stages.items() if n != "data")
    assert a.stages["prune"].key != b.stages["prune"].key
    man = (out / "x86-64-avx2" / "manifest.json").read_text()
    assert checkpoint_hash(tiny / "ckB") in man and checkpoint_hash(tiny / "ckA") not in man
    before = _snapshot(out)

    # a stage failing mid-build: the release from model B stays exactly as it was
    def broken(*a, **k):
        raise ValidateError("runner crashed", "simulated", "none")

    monkeypatch.setattr(build_stages, "validate", broken)
    with pytest.raises(ValidateError):
        build(_opts(tiny, "ckB", out), force=True)
    monkeypatch.undo()
    assert _snapshot(out) == before

    # disk full while the package is written: no partial release, the previous one untouched
    (out / "x86-64-avx2.tar.gz").unlink()  # forces the package step to run again
    before = _snapshot(out)
    real = shutil.copyfile

    def full(src, dst, *a, **k):
        if ".x86-64-avx2." in str(dst):  # the release's temporary folder
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(package.shutil, "copyfile", full)
    with pytest.raises(OutputError, match="disk full"):
        build(_opts(tiny, "ckB", out))
    monkeypatch.undo()
    assert _snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".x86-64-avx2")]


def test_interrupt_in_a_python_caller_exits_130_keeping_the_interpreter(tiny, tmp_path, monkeypatch, capsys):
    # the `cahp-edge` program ends with os._exit(130) on Ctrl-C / SIGTERM; a Python caller of
    # cli.main(argv) must get SystemExit(130) instead, with its interpreter (and this test) alive
    from cahp_edge import cli
    from cahp_edge.build import pipeline
    from cahp_edge.cli import app as cli_app

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "build", interrupted)
    argv = ["build", "--model", str(tiny / "ckA"), "--data", str(tiny / "data" / "train.tsv"),
            "--out", str(tmp_path / "out"), "--target", "host", "--config", str(tiny / "fast.toml")]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 130 and cli_app.OWN_PROCESS is False
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("interrupted:"), err
