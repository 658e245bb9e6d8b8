"""Remote profiling over SSH against a real OpenSSH server started on 127.0.0.1 (issue 5, item 5).

The server runs from a throwaway config, host key and user key in tmp; the client gets its own
known_hosts, so nothing in ~/.ssh is read or changed. Needs /usr/sbin/sshd (Debian's openssh-server;
CI: .ci/setup-sshd.sh). Runtime: ~15 s on 2 shared cores.
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cahp_edge.errors import DeviceError
from cahp_edge.targets.remote import parse_device, run_remote_profile
from tests.helpers.remote_helpers import (
    RUNNER_ARGS,
    fake_python,
    free_port,
    key_tree,
    local_profile,
    python_without,
    tiny_pkg,
)

SSHD = Path("/usr/sbin/sshd")
pytestmark = pytest.mark.skipif(
    not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
    reason="OpenSSH server/client absent: apt-get install openssh-server openssh-client "
    "(CI: .ci/setup-sshd.sh)",
)


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cahp-test", "-f", str(path)], check=True
    )
    return path


class Server:
    def __init__(self, tmp: Path):
        self.tmp, self.port, self.user = tmp, free_port(), getpass.getuser()
        self.host_key = _keygen(tmp / "host_ed25519")
        self.user_key = _keygen(tmp / "user_ed25519")
        self.other_key = _keygen(tmp / "other_ed25519")
        (tmp / "authorized_keys").write_text((tmp / "user_ed25519.pub").read_text())
        sftp = next(
            (p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server") if Path(p).exists()),
            "internal-sftp",
        )
        (tmp / "sshd_config").write_text(f"""
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {tmp}/sshd.pid
AuthorizedKeysFile {tmp}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp {sftp}
LogLevel ERROR
""")
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation dir sshd insists on
        self.log = open(tmp / "sshd.log", "w")  # noqa: SIM115 (open for the server's lifetime)
        self.proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(tmp / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    pytest.fail(f"sshd exited: {(tmp / 'sshd.log').read_text()[-500:]}")
                time.sleep(0.1)
        host_pub = (tmp / "host_ed25519.pub").read_text().split()
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")

    def url(self, python: str = sys.executable, port: int | None = None) -> str:
        return f"ssh://{self.user}@127.0.0.1:{port or self.port}?python={python}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pkg(tmp_path_factory) -> Path:
    return tiny_pkg(tmp_path_factory)


def _remote(server, pkg, url=None, args=RUNNER_ARGS, **kw):
    kw = {"known_hosts": server.known_hosts, "identity": server.user_key, "timeout": 120, **kw}
    return run_remote_profile(url or server.url(), pkg, args, **kw)


def test_profile_over_ssh_equals_local_run(server, pkg):
    local = local_profile(pkg, RUNNER_ARGS)
    remote = _remote(server, pkg)
    assert remote["ok"] is True and len(remote["nonce"]) == 32
    assert key_tree(remote) == key_tree(local)
    same = ("accuracy", "correct", "n", "eval_sha256", "predictions")
    assert {k: remote["accuracy"][k] for k in same} == {k: local["accuracy"][k] for k in same}
    assert remote["accuracy"]["accuracy"] == 1.0 and remote["settings"] == local["settings"]
    assert remote["model"]["sha256"] == local["model"]["sha256"]
    assert remote["latency"]["runs"] == local["latency"]["runs"] == 3
    assert remote["package"].startswith("/tmp/cahp-edge.") and not Path(remote["package"]).exists()  # cleaned


def test_unknown_host_key_is_refused(server, pkg, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t0 = time.monotonic()
    with pytest.raises(
        DeviceError, match=r"host key of ssh://.*127\.0\.0\.1.* is unknown.*Fix: connect once"
    ):
        _remote(server, pkg, known_hosts=empty)
    assert time.monotonic() - t0 < 15


def test_changed_host_key_is_refused(server, pkg, tmp_path):
    other = (server.tmp / "other_ed25519.pub").read_text().split()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{server.port} {other[0]} {other[1]}\n")
    with pytest.raises(DeviceError, match=r"has CHANGED since it was recorded.*ssh-keygen -R"):
        _remote(server, pkg, known_hosts=kh)


def test_wrong_key_gives_auth_refused_fast(server, pkg):
    t0 = time.monotonic()
    with pytest.raises(
        DeviceError, match=r"authentication to ssh://.* was refused: .*Permission denied"
    ) as e:
        _remote(server, pkg, identity=server.other_key)
    assert time.monotonic() - t0 < 15
    key_body = server.other_key.read_text().splitlines()[1]
    assert key_body not in str(e.value) and "PRIVATE KEY" not in str(e.value)


def test_unreachable_port_fails_fast(server, pkg):
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=r"ssh://.*:\d+ is unreachable: .*Connection refused"):
        _remote(server, pkg, url=server.url(port=free_port()))
    assert time.monotonic() - t0 < 15


def test_missing_onnxruntime_on_device(server, pkg, tmp_path):
    py = python_without("onnxruntime", tmp_path)
    with pytest.raises(
        DeviceError, match=r"python on ssh://.* lacks the module 'onnxruntime'.*pip install onnxruntime"
    ):
        _remote(server, pkg, url=server.url(python=str(py)))


def test_missing_python_on_device(server, pkg, tmp_path):
    with pytest.raises(DeviceError, match="python3 is not installed on ssh://"):
        _remote(server, pkg, url=server.url(python=str(tmp_path / "nowhere" / "python3")))


def test_hung_runner_times_out(server, pkg, tmp_path):
    py = fake_python(tmp_path / "python-hang", "sleep 30")
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=r"profiling timed out \(limit 4 s for the whole run\)"):
        _remote(server, pkg, url=server.url(python=str(py)), timeout=4)
    assert time.monotonic() - t0 < 30  # the timeout plus cleanup, never the 30 s of the hang


def test_device_url_validation():
    assert parse_device("ssh://pi@raspberrypi.local:2222").port == 2222
    assert parse_device("adb://emulator-5554?python=/data/x/python3").python == "/data/x/python3"
    with pytest.raises(DeviceError, match="carries a password") as e:
        parse_device("ssh://pi:hunter2@host")
    assert "hunter2" not in str(e.value)
    with pytest.raises(DeviceError, match="unknown scheme 'http'"):
        parse_device("http://host")


def test_validate_over_ssh_end_to_end(server, pkg, tmp_path):
    """`cahp-edge validate --device ssh://...` with the key and known_hosts given in the URL."""
    from cahp_edge.targets.validate import validate

    url = f"{server.url()}&identity={server.user_key}&known_hosts={server.known_hosts}"
    rep = validate(pkg, "rpi4-arm64", device=url, baseline_accuracy=1.0, runs=3, warmup=1, seq_len=32,
                   timeout=120)
    d = rep.to_dict()
    assert d["device"] == url and rep.accuracy == 1.0
    assert str(server.user_key) in url and "PRIVATE KEY" not in json.dumps(d)


def test_runner_error_comes_back_as_one_line(server, pkg):
    with pytest.raises(DeviceError) as e:
        _remote(server, pkg, args=["--seq-len", "4096"])
    msg = str(e.value)
    assert msg.startswith("the runner on ssh://") and "longer than the model accepts" in msg
    assert msg.count("Fix:") == 1 and "\n" not in msg


def test_package_larger_than_free_space_is_refused(server, pkg, tmp_path):
    big = tmp_path / "big-pkg"
    shutil.copytree(pkg, big)
    with open(big / "weights.bin", "wb") as f:
        f.truncate(4 << 40)  # sparse: 4 TiB on paper, nothing on disk
    with pytest.raises(DeviceError, match=r"ssh://.* is out of disk space: the package needs \d+ MB in /tmp"):
        _remote(server, big)
