"""Run the device-side runner on a remote device and collect its JSON.

    cahp-edge validate PKG --target rpi4-arm64 --device ssh://pi@raspberrypi.local
    cahp-edge validate PKG --target android-arm64 --device adb://R58M123ABC

``run_remote_profile(device, package_dir, args)`` copies the package and the runner
(``cahp_edge/__init__.py`` + ``cahp_edge/runtime/``, standard library + onnxruntime + numpy +
tokenizers only) into a fresh temporary folder on the device, runs
``python3 -m cahp_edge.runtime profile PKG --json ARGS`` there, parses its JSON and removes the
folder. The device needs only python3 with onnxruntime, numpy and tokenizers.

ssh://user@host[:port] uses the system's ssh and scp with BatchMode (never a password prompt) and
host-key checking on: an unknown or changed host key is an error, never accepted silently; pass
``known_hosts=`` to use another known_hosts file. adb://SERIAL uses ``adb -s SERIAL push/shell``.
A device URL may carry ``?python=/path/to/python3`` (Termux: /data/data/com.termux/files/usr/bin/python3)
and, for ssh, ``&identity=~/.ssh/pi_ed25519&known_hosts=PATH`` (same as the keyword arguments).

Every step has a timeout; every failure is one DeviceError line naming the cause (unreachable, auth
refused, host key, missing python module, out of disk, runner crash, timeout) and the fix. Each run
passes a fresh nonce and checks it comes back, so a stale result is never reported as fresh. Key
material is never read or echoed: only the identity file's path is passed to ssh.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cahp_edge.errors import DeviceError
from cahp_edge.targets.remote_errors import classify, tail

RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
CLEANUP_TIMEOUT = 20.0
_HOST_RE = re.compile(r"^[A-Za-z0-9._:-]+$")  # hostnames, IPv4, bracket-less IPv6 after urlsplit
_SERIAL_RE = re.compile(r"^[A-Za-z0-9._:-]+$")


@dataclass(frozen=True)
class Device:
    scheme: str  # "ssh" | "adb"
    host: str = ""  # ssh host, or adb serial
    user: str = ""
    port: int | None = None
    python: str = "python3"
    identity: str = ""  # ssh: path of the private key file (?identity=); the key itself is never read
    known_hosts: str = ""  # ssh: known_hosts file to check the host key against (?known_hosts=)

    @property
    def label(self) -> str:
        """How the device is named in messages (no secrets: ssh URLs never carry passwords here)."""
        if self.scheme == "adb":
            return f"adb://{self.host}"
        return (
            f"ssh://{self.user + '@' if self.user else ''}{self.host}{f':{self.port}' if self.port else ''}"
        )


def parse_device(device: str) -> Device:
    fix = "use ssh://user@host[:port] or adb://SERIAL (see `adb devices`)"
    try:
        u = urlsplit(device)
        port = u.port
    except ValueError as e:
        raise DeviceError(f"device {device!r} is not a valid URL", str(e), fix) from e
    query = parse_qs(u.query)
    unknown = sorted(set(query) - {"python", "identity", "known_hosts"})
    if unknown:
        raise DeviceError(f"device URL has unknown option(s) {', '.join(unknown)}",
                          "known: python, identity, known_hosts", fix)
    python = (query.get("python") or ["python3"])[-1]
    if u.scheme == "ssh":
        if u.password is not None:
            # never echo it back: the message names the user and host only
            raise DeviceError(
                f"device ssh://{u.username}@{u.hostname} carries a password",
                "passwords are not accepted (BatchMode: key authentication only)",
                "remove the password from the URL and use an SSH key (ssh-copy-id)",
            )
        if not u.hostname or not _HOST_RE.match(u.hostname):
            raise DeviceError(f"device {device!r} has no valid host", "expected ssh://user@host[:port]", fix)
        opt = {k: str(Path(query[k][-1]).expanduser()) for k in ("identity", "known_hosts") if k in query}
        return Device("ssh", u.hostname, u.username or "", port, python, **opt)
    if u.scheme == "adb":
        serial = u.netloc
        if not serial or not _SERIAL_RE.match(serial):
            raise DeviceError(f"device {device!r} has no valid serial", "expected adb://SERIAL", fix)
        return Device("adb", serial, python=python)
    raise DeviceError(
        f"device {device!r} has an unknown scheme {u.scheme!r}", "ssh and adb are supported", fix
    )


# --- transports ---------------------------------------------------------------------------------


@dataclass
class _Transport:
    dev: Device
    connect_timeout: float = 10.0
    known_hosts: Path | None = None
    identity: Path | None = None
    extra: list[str] = field(default_factory=list)
    limit: float = 600.0

    def _call(self, argv: list[str], timeout: float, step: str) -> subprocess.CompletedProcess:
        if timeout <= 0:
            raise DeviceError(f"{self.dev.label}: timed out before {step}", "the overall timeout was used up",
                              "raise the timeout")
        try:
            # own session: on timeout the whole group goes (ssh's helpers, adb's children), so no
            # orphan keeps our pipes open and turns a timeout into a hang; stdin never reaches ssh
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, errors="replace",
                                    start_new_session=True)
        except FileNotFoundError as e:
            tool = argv[0]
            raise DeviceError(f"'{tool}' is not installed on this machine",
                              f"it is needed for {self.dev.label}",
                              "install openssh-client" if self.dev.scheme == "ssh" else
                              "install Android platform-tools (adb) and put it on PATH") from e
        try:
            out, err = proc.communicate(timeout=timeout)
            return subprocess.CompletedProcess(argv, proc.returncode, out, err)
        except subprocess.TimeoutExpired as e:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
            raise DeviceError(
                f"{self.dev.label}: {step} timed out (limit {self.limit:.0f} s for the whole run)",
                "the device or the connection stopped answering",
                "check the device; raise the timeout for slow devices",
            ) from e

    def _check(self, proc: subprocess.CompletedProcess, step: str) -> subprocess.CompletedProcess:
        if proc.returncode != 0:
            text = proc.stderr + "\n" + proc.stdout
            raise classify(self.dev.label, text) or DeviceError(
                f"{self.dev.label}: {step} failed (exit {proc.returncode})",
                tail(text),
                "run the same step by hand to see the full output",
            )
        return proc


class _Ssh(_Transport):
    def _opts(self, port_flag: str) -> list[str]:
        # BatchMode: fail instead of prompting; StrictHostKeyChecking=yes even where a user's config
        # says accept-new: an unknown key is the user's call, never ours
        o = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
             "-o", f"ConnectTimeout={int(self.connect_timeout)}",
             "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self.known_hosts:
            o += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.identity:
            o += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if self.dev.port:
            o += [port_flag, str(self.dev.port)]
        return o + self.extra

    @property
    def _target(self) -> str:
        return f"{self.dev.user}@{self.dev.host}" if self.dev.user else self.dev.host

    def shell(self, cmd: str, timeout: float, step: str) -> subprocess.CompletedProcess:
        return self._call(["ssh", *self._opts("-p"), "--", self._target, cmd], timeout, step)

    def push(self, sources: list[Path], dest: str, timeout: float) -> None:
        host = self.dev.host if ":" not in self.dev.host else f"[{self.dev.host}]"  # IPv6 in scp's syntax
        host = f"{self.dev.user}@{host}" if self.dev.user else host
        self._check(
            self._call(
                ["scp", "-q", "-r", *self._opts("-P"), "--", *map(str, sources), f"{host}:{dest}/"],
                timeout,
                "copying the package",
            ),
            "copying the package",
        )

    def mktemp(self, timeout: float) -> tuple[str, int | None]:
        # one round trip: the folder, then the free space where it lives (df -P: one line per fs)
        cmd = 'd=$(mktemp -d "${TMPDIR:-/tmp}/cahp-edge.XXXXXX") && echo "$d" && { df -Pk "$d" || true; }'
        p = self._check(self.shell(cmd, timeout, "connecting"), "creating a temporary folder")
        lines = p.stdout.strip().splitlines()
        return lines[0].strip(), _free_kb(lines[1:])


class _Adb(_Transport):
    def _adb(self) -> list[str]:
        return ["adb", "-s", self.dev.host]

    def shell(self, cmd: str, timeout: float, step: str) -> subprocess.CompletedProcess:
        # adb before Android 7 drops the exit status and merges stderr: append our own marker
        p = self._call([*self._adb(), "shell", f"{cmd}; echo __CAHP_RC=$?"], timeout, step)
        m = re.search(r"__CAHP_RC=(\d+)\s*$", p.stdout)
        if p.returncode == 0 and m:
            p = subprocess.CompletedProcess(p.args, int(m.group(1)), p.stdout[: m.start()], p.stderr)
        return p

    def push(self, sources: list[Path], dest: str, timeout: float) -> None:
        self._check(
            self._call(
                [*self._adb(), "push", *map(str, sources), dest + "/"], timeout, "copying the package"
            ),
            "copying the package",
        )

    def mktemp(self, timeout: float) -> tuple[str, int | None]:
        d = f"/data/local/tmp/cahp-edge.{uuid.uuid4().hex[:12]}"
        p = self._check(self.shell(f"mkdir -p {d} && {{ df -Pk {d} || df -k {d} || true; }}", timeout,
                                   "connecting"), "creating a temporary folder")
        return d, _free_kb(p.stdout.strip().splitlines())


def _free_kb(df_lines: list[str]) -> int | None:
    """Available KiB from `df -Pk` output (header + one line), or None where it cannot be read."""
    for line in reversed(df_lines):
        cols = line.split()
        if len(cols) >= 4 and cols[3].isdigit():
            return int(cols[3])
    return None


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _stage(package_dir: Path, into: Path) -> list[Path]:
    """pkg/ (the package) and lib/cahp_edge/{__init__.py,runtime/} in a local folder; returns them."""
    pkg, lib = into / "pkg", into / "lib"
    shutil.copytree(package_dir, pkg, symlinks=False)
    (lib / "cahp_edge").mkdir(parents=True)
    shutil.copy2(RUNTIME_DIR.parent / "__init__.py", lib / "cahp_edge" / "__init__.py")
    shutil.copytree(RUNTIME_DIR, lib / "cahp_edge" / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    return [pkg, lib]


def _parse(dev: Device, proc: subprocess.CompletedProcess, nonce: str) -> dict:
    doc = None
    for line in reversed(proc.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if isinstance(doc, dict) and doc.get("ok") is False:
        err = doc.get("error") if isinstance(doc.get("error"), dict) else {"what": str(doc.get("error"))}
        msg = str(err.get("message") or err.get("what") or "")
        what = str(err.get("what") or "failed").rstrip(".")
        raise classify(dev.label, msg) or DeviceError(
            f"the runner on {dev.label}: {what}", str(err.get("why", "")), str(err.get("fix", "")))
    if proc.returncode != 0 or not isinstance(doc, dict):
        text = proc.stderr + "\n" + proc.stdout
        raise classify(dev.label, text) or DeviceError(
            f"the runner on {dev.label} crashed (exit {proc.returncode})"
            if proc.returncode
            else f"the runner on {dev.label} printed no JSON",
            tail(text),
            "run `python3 -m cahp_edge.runtime profile PKG` on the device to see the full error",
        )
    if doc.get("nonce") != nonce:
        raise DeviceError(
            f"the result from {dev.label} is not from this run",
            "its nonce does not match",
            "rerun; check nothing else writes to the runner's output",
        )
    return doc


def _given_nonce(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--nonce" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--nonce="):
            return a.split("=", 1)[1]
    return None


def run_remote_profile(
    device: str,
    package_dir: Path,
    args: list[str],
    timeout: float = 600,
    *,
    known_hosts: Path | None = None,
    identity: Path | None = None,
    connect_timeout: float = 10.0,
    ssh_options: list[str] | None = None,
) -> dict:
    """Profile ``package_dir`` on ``device`` (ssh://... or adb://...) and return the runner's JSON dict.

    ``args`` are extra runner flags (e.g. ``["--threads", "4", "--no-operators"]``); paths in them
    refer to the device. ``timeout`` bounds the whole run (copy + profile); cleanup has its own short one.
    """
    dev = parse_device(device)
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise DeviceError(
            f"package {package_dir} is not a folder",
            "nothing to copy to the device",
            "pass the package folder written by `cahp-edge build`",
        )
    cls = _Ssh if dev.scheme == "ssh" else _Adb
    t = cls(
        dev,
        connect_timeout,
        Path(known_hosts or dev.known_hosts) if (known_hosts or dev.known_hosts) else None,
        Path(identity or dev.identity) if (identity or dev.identity) else None,
        list(ssh_options or []),
        timeout,
    )
    deadline = time.monotonic() + timeout
    left = lambda: deadline - time.monotonic()  # noqa: E731
    args = list(args)
    nonce = _given_nonce(args)
    if nonce is None:  # the caller (validate) may bring its own; otherwise we make one
        nonce = uuid.uuid4().hex
        args += ["--nonce", nonce]
    if "--json" not in args:
        args.append("--json")
    remote, free_kb = t.mktemp(min(left(), connect_timeout + 20))
    try:
        need = _tree_bytes(package_dir) + _tree_bytes(RUNTIME_DIR) + (8 << 20)  # + profiling files
        if free_kb is not None and free_kb * 1024 < need:
            raise DeviceError(f"{dev.label} is out of disk space",
                              f"the package needs {need / 2**20:.0f} MB in {remote.rsplit('/', 1)[0]}, "
                              f"{free_kb / 1024:.0f} MB are free",
                              "free space on the device (or set TMPDIR there to a larger disk)")
        with tempfile.TemporaryDirectory(prefix="cahp-stage-") as tmp:
            try:
                staged = _stage(package_dir, Path(tmp))
            except OSError as e:
                raise DeviceError("could not stage the package on this machine", str(e),
                                  "free space in the local temporary folder (or set TMPDIR)") from e
            t.push(staged, remote, left())
        q = shlex.quote
        cmd = (
            f"cd {q(remote)} && PYTHONPATH={q(remote + '/lib')} PYTHONDONTWRITEBYTECODE=1 "
            f"{q(dev.python)} -m cahp_edge.runtime profile {q(remote + '/pkg')} "
            + " ".join(q(a) for a in args)
        )
        proc = t.shell(cmd, left(), "profiling")
        return _parse(dev, proc, nonce)
    finally:
        # best effort: a dead device must not turn a clear error into a cleanup error
        with contextlib.suppress(DeviceError):
            t.shell(f"rm -rf {shlex.quote(remote)}", CLEANUP_TIMEOUT, "cleaning up")
