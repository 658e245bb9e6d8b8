"""Shared pieces of the remote-device tests: a tiny package, a local reference run, fake pythons."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# quick settings: a tiny model, few latency runs; the same flags go to the local and the remote run
RUNNER_ARGS = ["--runs", "3", "--warmup", "1", "--profile-runs", "2", "--threads", "1"]


_PKG: Path | None = None


def tiny_pkg(tmp_path_factory) -> Path:
    """One tiny package for all remote tests (they only read it: every run copies it first)."""
    global _PKG
    if _PKG is None or not _PKG.exists():
        from tests.helpers.tiny_package import make_tiny_package

        _PKG = make_tiny_package(tmp_path_factory.mktemp("remote-pkg") / "tiny")
    return _PKG


def local_profile(pkg: Path, args: list[str]) -> dict:
    p = subprocess.run(
        [sys.executable, "-m", "cahp_edge.runtime", "profile", str(pkg), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=True,
    )
    return json.loads(p.stdout)


def key_tree(d):
    """The structure of a JSON document: nested dict keys (values and list lengths ignored)."""
    if isinstance(d, dict):
        return {k: key_tree(v) for k, v in d.items()}
    if isinstance(d, list):
        return [key_tree(d[0])] if d and isinstance(d[0], dict) else []
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_python(path: Path, body: str) -> Path:
    """A 'python3' for the device: a shell script that does ``body`` (``$@`` = the runner's arguments)."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _shadow(folder: Path, module: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")


def python_without(module: str, tmp: Path) -> Path:
    """The host's python, but ``import <module>`` fails as it does on a device without it."""
    _shadow(tmp / f"no-{module}", module)
    return fake_python(tmp / f"python-no-{module}",
                       f'PYTHONPATH="{tmp / f"no-{module}"}:$PYTHONPATH" exec {sys.executable} "$@"')


def device_python(tmp: Path) -> Path:
    """A python like a Pi's: onnxruntime, numpy, tokenizers; no cahp_edge install, torch or transformers.

    ``-S`` skips site-packages' .pth files, so the editable cahp_edge install is invisible and the
    runner must come from the staged copy; torch and transformers are shadowed by failing modules.
    """
    import sysconfig

    shadow = tmp / "device-shadow"
    for mod in ("torch", "transformers"):
        _shadow(shadow, mod)
    site = sysconfig.get_paths()["purelib"]
    return fake_python(tmp / "python-device",
                       f'PYTHONPATH="$PYTHONPATH:{shadow}:{site}" exec {sys.executable} -S "$@"')
