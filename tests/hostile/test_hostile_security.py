"""Security defaults: no unpickling, no extraction outside the destination, SSH host keys checked,
key material never read or echoed, tracebacks only with --debug."""

from __future__ import annotations

import io
import pickle
import sys
import tarfile
from pathlib import Path

import pytest

from cahp_edge.errors import DeviceError, ModelError, PackageError
from tests.hostile.support import fails, run_cli, snapshot


class _Plant:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_build_never_unpickles_by_default(ckpt, tiny_data, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Plant(marker)}))
    argv = [
        "build",
        "-q",
        "--model",
        ckpt,
        "--data",
        tiny_data / "train.tsv",
        "--eval",
        tiny_data / "dev.tsv",
        "--target",
        "x86-64-avx2",
        "--out",
        tmp_path / "dist",
    ]
    fails(argv, capsys, ["pickle", "--trust-pickle"])
    assert not marker.exists()
    assert not (tmp_path / "dist" / "x86-64-avx2").exists()


def test_safe_extract_never_writes_outside(tmp_path):
    from cahp_edge.release.package import safe_extract

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("pkg/ok.txt", b"fine"), ("pkg/../../escaped.txt", b"owned")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    arc = tmp_path / "a" / "evil.tar.gz"
    arc.parent.mkdir()
    arc.write_bytes(buf.getvalue())
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(PackageError, match=r"'\.\.' component"):
        safe_extract(arc, dest)
    assert snapshot(tmp_path) == before  # not even the harmless member was written


def test_ssh_options_keep_host_key_checking_on():
    from cahp_edge.targets.remote import _Ssh, parse_device

    opts = _Ssh(parse_device("ssh://pi@raspberrypi.local:2222"))._opts("-p")
    pairs = {opts[i + 1].split("=")[0]: opts[i + 1].split("=", 1)[1] for i, o in enumerate(opts) if o == "-o"}
    assert pairs["BatchMode"] == "yes"  # never a password prompt
    assert pairs["StrictHostKeyChecking"] == "yes"  # unknown or changed host keys are errors
    assert "UserKnownHostsFile" not in pairs  # the user's known_hosts, not /dev/null
    assert opts[opts.index("-p") : opts.index("-p") + 2] == ["-p", "2222"]


def test_ssh_argv_as_run_and_key_never_echoed(tmp_path, monkeypatch, onnx_pkg):
    """The real call path: what ssh receives, and that a refused key's contents appear nowhere."""
    from cahp_edge.targets.remote import run_remote_profile

    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv.txt"
    for tool in ("ssh", "scp"):
        (bindir / tool).write_text(
            f'#!/bin/sh\necho "$@" >> "{log}"\necho "Host key verification failed." >&2\nexit 255\n'
        )
        (bindir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    key = tmp_path / "id_ed25519"
    key.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nKEYMATERIALsecret456\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    with pytest.raises(DeviceError) as e:
        run_remote_profile("ssh://pi@10.0.0.7", onnx_pkg, [], timeout=20, identity=key)
    msg = e.value.line()
    assert "host key of ssh://pi@10.0.0.7 is unknown" in msg and "\n" not in msg
    argv = log.read_text()
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert "StrictHostKeyChecking=no" not in argv and "accept-new" not in argv
    assert f"-i {key}" in argv  # only the path is passed
    assert "secret456" not in argv + msg


def test_manifest_scrubs_secrets(tmp_path, onnx_pkg):
    from cahp_edge.release import package

    manifest = {
        "options": {
            "model": "org/model",
            "hf_token": "hf_secret789",
            "identity_file": "/home/u/.ssh/id_rsa",
            "device": "ssh://pi:pw-secret789@pi.local",
            "api_key": "secret789",
        }
    }
    rel = package.write_release(tmp_path / "dist", "t", {"model.onnx": onnx_pkg / "model.onnx"}, manifest)
    for p in [*rel.dir.rglob("*"), rel.tarball]:
        if p.is_file():
            data = p.read_bytes() if p.suffix != ".gz" else __import__("gzip").decompress(p.read_bytes())
            assert b"secret789" not in data and b"id_rsa" not in data, p


def test_traceback_only_with_debug(tmp_path, capsys):
    r = run_cli(["inspect", tmp_path / "nope"], capsys)
    assert r.code == 1 and "Traceback" not in r.err
    from cahp_edge.cli import main

    capsys.readouterr()
    with pytest.raises(ModelError) as e:  # --debug re-raises: the full traceback reaches the terminal
        main(["--debug", "inspect", str(tmp_path / "nope")])
    assert str(tmp_path / "nope") in e.value.line() and e.value.exit_code == 1
    assert "error:" not in capsys.readouterr().err  # re-raised as is, not also summarised
