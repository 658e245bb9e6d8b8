"""Hostile ONNX files and flaky devices through `cahp-edge validate`: one line, exit 1, never a hang.

Devices: ssh to a closed port on 127.0.0.1 (unreachable); a stand-in `ssh` that answers like a server
refusing the key; the stand-in `adb` of tests/fake_adb with a device-side "python" that crashes,
hangs, lacks onnxruntime or finds the disk full.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.hostile.support import TESTS, fails_clean

FAKE_ADB = TESTS / "fake_adb"
SERIAL = "emulator-5554"


def _validate(pkg: Path, *extra) -> list:
    return ["validate", pkg, "-q", "--runs", "2", "--warmup", "0", "--limit", "4", "--seq-len", "16", *extra]


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


# ---- ONNX files -----------------------------------------------------------------------------------
def test_onnx_truncated(onnx_pkg, tmp_path, capsys):
    m = onnx_pkg / "model.onnx"
    m.write_bytes(m.read_bytes()[: m.stat().st_size // 3])
    fails_clean(_validate(onnx_pkg), capsys, "model.onnx", tmp_path)


def test_onnx_not_a_model(onnx_pkg, tmp_path, capsys):
    (onnx_pkg / "model.onnx").write_bytes(b"this is not protobuf at all" * 10)
    fails_clean(_validate(onnx_pkg), capsys, "model.onnx", tmp_path)


def test_onnx_missing_from_package(onnx_pkg, tmp_path, capsys):
    (onnx_pkg / "model.onnx").unlink()
    fails_clean(_validate(onnx_pkg), capsys, "no model.onnx or model.ort", tmp_path)


def test_validate_path_missing(tmp_path, capsys):
    fails_clean(_validate(tmp_path / "nowhere"), capsys, "not found", tmp_path, code=(1, 2))


def test_tokenizer_missing_from_package(onnx_pkg, tmp_path, capsys):
    (onnx_pkg / "tokenizer.json").unlink()
    fails_clean(_validate(onnx_pkg), capsys, "tokenizer", tmp_path)


# ---- ssh ------------------------------------------------------------------------------------------
@pytest.mark.skipif(
    not Path("/usr/bin/ssh").exists(), reason="OpenSSH client absent (apt-get install openssh-client)"
)
def test_ssh_unreachable_closed_port(onnx_pkg, tmp_path, capsys):
    from tests.helpers.remote_helpers import free_port

    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    line = fails_clean(
        _validate(onnx_pkg, "--device", f"ssh://nobody@127.0.0.1:{port}", "--timeout", "30"),
        capsys,
        ["is unreachable", f"127.0.0.1:{port}"],
        tmp_path,
    )
    assert "Connection refused" in line and time.monotonic() - t0 < 30


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    """A stand-in `ssh`/`scp` on PATH that records its argv and answers like a server refusing our key."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "ssh-argv.txt"
    for tool in ("ssh", "scp"):
        _script(
            bindir / tool,
            f'echo "{tool} $*" >> "{log}"\necho "nobody@pi: Permission denied (publickey)." >&2\nexit 255',
        )
    monkeypatch.setenv("PATH", f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return log


def test_ssh_auth_refused(fake_ssh, onnx_pkg, tmp_path, capsys):
    fails_clean(
        _validate(onnx_pkg, "--device", "ssh://nobody@pi.local", "--timeout", "30"),
        capsys,
        ["authentication to ssh://nobody@pi.local was refused", "ssh-copy-id"],
        tmp_path / "pkg",
    )


def test_ssh_password_in_url_refused_and_not_echoed(onnx_pkg, tmp_path, capsys):
    line = fails_clean(
        _validate(onnx_pkg, "--device", "ssh://pi:hunter2@pi.local"), capsys, "carries a password", tmp_path
    )
    assert "hunter2" not in line


def test_unknown_device_scheme(onnx_pkg, tmp_path, capsys):
    fails_clean(_validate(onnx_pkg, "--device", "ftp://pi.local"), capsys, "unknown scheme 'ftp'", tmp_path)


# ---- adb (stand-in) ---------------------------------------------------------------------------------
@pytest.fixture
def adb(monkeypatch, tmp_path) -> Path:
    root = tmp_path / "phone"
    monkeypatch.setenv("PATH", f"{FAKE_ADB}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_SERIALS", SERIAL)
    return root


def _adb_validate(onnx_pkg: Path, python: Path | str, *extra) -> list:
    return _validate(onnx_pkg, "--device", f"adb://{SERIAL}?python={python}", *extra)


def _phone_clean(root: Path) -> None:
    tmp = root / "data/local/tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == [], "the device's temporary folder was not cleaned"


def test_adb_device_not_connected(adb, onnx_pkg, tmp_path, capsys):
    fails_clean(
        _validate(onnx_pkg, "--device", "adb://R58MNOPE", "--timeout", "30"),
        capsys,
        ["adb://R58MNOPE is not connected", "adb devices"],
        tmp_path / "pkg",
    )


def test_adb_runner_crashes(adb, onnx_pkg, tmp_path, capsys):
    py = _script(tmp_path / "crashing-python", 'echo "Segmentation fault (core dumped)" >&2\nexit 139')
    fails_clean(
        _adb_validate(onnx_pkg, py, "--timeout", "60"),
        capsys,
        ["crashed (exit 139)", "Segmentation"],
        tmp_path / "pkg",
    )
    _phone_clean(adb)


def test_adb_runner_times_out(adb, onnx_pkg, tmp_path, capsys):
    py = _script(tmp_path / "hanging-python", "exec sleep 30")
    t0 = time.monotonic()
    fails_clean(_adb_validate(onnx_pkg, py, "--timeout", "4"), capsys, "timed out", tmp_path / "pkg")
    assert time.monotonic() - t0 < 25, "a hung device must not hang the CLI"


def test_adb_python_lacks_onnxruntime(adb, onnx_pkg, tmp_path, capsys):
    from tests.helpers.remote_helpers import python_without

    py = python_without("onnxruntime", tmp_path)
    fails_clean(
        _adb_validate(onnx_pkg, py, "--timeout", "60"),
        capsys,
        ["lacks the module 'onnxruntime'", "pip install"],
        tmp_path / "pkg",
    )
    _phone_clean(adb)


def test_adb_device_disk_full(adb, onnx_pkg, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DISK_FULL", "1")
    fails_clean(
        _adb_validate(onnx_pkg, sys.executable, "--timeout", "60"),
        capsys,
        "out of disk space",
        tmp_path / "pkg",
    )


def test_adb_no_python_on_device(adb, onnx_pkg, tmp_path, capsys):
    fails_clean(
        _adb_validate(onnx_pkg, tmp_path / "no-such-python", "--timeout", "60"),
        capsys,
        "python3 is not installed",
        tmp_path / "pkg",
    )


def test_package_tokenizer_of_another_model(onnx_pkg, tmp_path, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": 400 + i for i in range(115)} | {"[UNK]": 1, "[PAD]": 0}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(onnx_pkg / "tokenizer.json"))
    fails_clean(_validate(onnx_pkg), capsys, ["inference failed", "tokenizer belong together"], tmp_path)


def test_validate_data_with_foreign_labels(onnx_pkg, tmp_path, capsys):
    data = tmp_path / "eval.tsv"
    data.write_text("sentence\tlabel\nw1 w2\tmaybe\n")
    fails_clean(
        _validate(onnx_pkg, "--data", data), capsys, ["['maybe']", "not in the model's label set"], tmp_path
    )
