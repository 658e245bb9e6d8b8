"""Remote profiling over adb, against the stand-in tests/fake_adb/adb (issue 5, item 5).

The stand-in runs `adb shell` / `adb push` on this machine with /data/local/tmp mapped into a tmp
folder, so the whole path (push the package and the runner, run it, parse JSON, clean up) runs
without a phone. Runtime: ~10 s on 2 shared cores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from cahp_edge.errors import DeviceError
from cahp_edge.targets.remote import run_remote_profile
from tests.helpers.remote_helpers import (
    RUNNER_ARGS,
    device_python,
    fake_python,
    key_tree,
    local_profile,
    python_without,
    tiny_pkg,
)

FAKE_ADB = Path(__file__).resolve().parents[1] / "fake_adb"
SERIAL = "emulator-5554"


@pytest.fixture
def adb(monkeypatch, tmp_path) -> Path:
    root = tmp_path / "phone"
    monkeypatch.setenv("PATH", f"{FAKE_ADB}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_SERIALS", f"{SERIAL} R58M0FFLINE")
    monkeypatch.setenv("FAKE_ADB_OFFLINE", "R58M0FFLINE")
    return root


@pytest.fixture(scope="module")
def pkg(tmp_path_factory) -> Path:
    return tiny_pkg(tmp_path_factory)


def _url(python: str | Path = sys.executable, serial: str = SERIAL) -> str:
    return f"adb://{serial}?python={python}"


def test_profile_over_adb_equals_local_run(adb, pkg, tmp_path):
    local = local_profile(pkg, RUNNER_ARGS)
    # the device's python has no cahp_edge, torch or transformers: the staged runner must suffice
    remote = run_remote_profile(_url(device_python(tmp_path)), pkg, RUNNER_ARGS, timeout=120)
    assert key_tree(remote) == key_tree(local)
    assert remote["accuracy"]["predictions"] == local["accuracy"]["predictions"]
    assert remote["accuracy"]["accuracy"] == 1.0
    assert "/data/local/tmp/cahp-edge." in remote["package"]  # ran in the device's tmp folder...
    assert list((adb / "data/local/tmp").iterdir()) == []  # ...and cleaned up after itself


def test_unknown_serial(adb, pkg):
    with pytest.raises(DeviceError, match=r"adb://R58MNOPE is not connected: adb: device 'R58MNOPE' not"):
        run_remote_profile(_url(serial="R58MNOPE"), pkg, RUNNER_ARGS, timeout=30)


def test_offline_device(adb, pkg):
    with pytest.raises(DeviceError, match=r"is not connected: adb: device offline\. Fix: plug it in"):
        run_remote_profile(_url(serial="R58M0FFLINE"), pkg, RUNNER_ARGS, timeout=30)


def test_device_out_of_disk(adb, pkg, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DISK_FULL", "1")
    with pytest.raises(DeviceError, match=r"adb://emulator-5554 is out of disk space: .*No space left on"):
        run_remote_profile(_url(), pkg, RUNNER_ARGS, timeout=30)
    assert list((adb / "data/local/tmp").iterdir()) == []  # the half-made folder is removed


def test_missing_onnxruntime(adb, pkg, tmp_path):
    py = python_without("onnxruntime", tmp_path)
    with pytest.raises(DeviceError, match=r"python on adb://emulator-5554 lacks the module 'onnxruntime'"):
        run_remote_profile(_url(py), pkg, RUNNER_ARGS, timeout=60)


def test_missing_numpy_traceback_is_recognised(adb, pkg, tmp_path):
    # numpy is imported before the runner can catch anything: a bare traceback comes back
    py = python_without("numpy", tmp_path)
    with pytest.raises(DeviceError, match=r"lacks the module 'numpy'.*pip install onnxruntime numpy"):
        run_remote_profile(_url(py), pkg, RUNNER_ARGS, timeout=60)


def test_runner_crash(adb, pkg, tmp_path):
    py = fake_python(tmp_path / "python-segv", "echo 'Fatal Python error' >&2; kill -SEGV $$")
    with pytest.raises(DeviceError, match=r"runner on adb://emulator-5554 crashed \(exit 139\): .*Segm"):
        run_remote_profile(_url(py), pkg, RUNNER_ARGS, timeout=60)


def test_stale_json_is_not_accepted(adb, pkg, tmp_path):
    # a runner that prints an old result (another run's nonce) must not pass for this run's
    old = '{"schema": "cahp-edge-profile/1", "ok": true, "nonce": "0123"}'
    py = fake_python(tmp_path / "python-stale", f"echo '{old}'")
    with pytest.raises(DeviceError, match="is not from this run: its nonce does not match"):
        run_remote_profile(_url(py), pkg, RUNNER_ARGS, timeout=60)


@pytest.mark.slow  # waits for the device timeout
def test_hung_device_times_out(adb, pkg, tmp_path):
    py = fake_python(tmp_path / "python-hang", "sleep 20")
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=r"profiling timed out \(limit 3 s"):
        run_remote_profile(_url(py), pkg, RUNNER_ARGS, timeout=3)
    assert time.monotonic() - t0 < 15


def test_adb_not_installed(monkeypatch, tmp_path, pkg):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeviceError, match=r"'adb' is not installed on this machine.*platform-tools"):
        run_remote_profile(_url(), pkg, RUNNER_ARGS, timeout=10)


def test_callers_nonce_is_used_and_checked(adb, pkg):
    r = run_remote_profile(_url(), pkg, ["--json", "--nonce", "abc123", "--no-latency", "--no-operators"],
                           timeout=60)
    assert r["nonce"] == "abc123" and r["latency"] is None and r["accuracy"]["accuracy"] == 1.0


def test_package_larger_than_free_space_is_refused_before_copying(adb, pkg, tmp_path):
    import shutil

    big = tmp_path / "big-pkg"
    shutil.copytree(pkg, big)
    with open(big / "weights.bin", "wb") as f:
        f.truncate(4 << 40)  # sparse: 4 TiB on paper, nothing on disk
    with pytest.raises(DeviceError, match=r"out of disk space: the package needs \d+ MB in /data/local/tmp"):
        run_remote_profile(_url(), big, RUNNER_ARGS, timeout=30)
    assert list((adb / "data/local/tmp").iterdir()) == []
