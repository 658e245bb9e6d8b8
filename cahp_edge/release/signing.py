"""Signed releases with OpenSSH signatures (``ssh-keygen -Y sign/verify``, Ed25519), no home-made crypto.

    cahp-edge keygen --out release-key          # release-key (private, 0600) + release-key.pub
    cahp-edge build ... --sign-key release-key  # writes SHA256SUMS.sig beside SHA256SUMS
    cahp-edge verify dist/host.tar.gz --public-key release-key.pub

The signature covers SHA256SUMS, which covers every other file, so a swapped model with recomputed
checksums fails. OpenSSH is on every Raspberry Pi and most Linux boxes, so a device can check a release
with the same command and no Python package (the release's runner does it with ``--public-key``).
Private keys are read by ssh-keygen only; cahp-edge never copies them into a release, a manifest or a log.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from cahp_edge.errors import PackageError, UsageError

NAMESPACE = "cahp-edge-release"  # OpenSSH signature namespace: a release signature is valid nowhere else
SIGNATURE = "SHA256SUMS.sig"  # = package.SIGNATURE
IDENTITY = "cahp-edge"


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise UsageError("ssh-keygen is not installed", "signing and checking signatures use OpenSSH",
                         "install openssh-client (apt install openssh-client)")
    return exe


def _run(args: list[str], what: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([_ssh_keygen(), *args], input=stdin, capture_output=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PackageError(f"ssh-keygen could not {what}", str(e), "check the OpenSSH installation") from e


def keygen(path: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair at ``path`` (private, mode 0600) and ``path.pub``; never overwrites."""
    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    if path.exists() or pub.exists():
        raise UsageError(f"{path if path.exists() else pub} already exists", "a key is never overwritten",
                         "choose another --out, or remove the old key pair yourself")
    path.parent.mkdir(parents=True, exist_ok=True)
    r = _run(["-q", "-t", "ed25519", "-N", "", "-C", IDENTITY, "-f", str(path)], "create a key")
    if r.returncode != 0:
        why = r.stderr.decode(errors="replace").strip()[:200]
        raise PackageError(f"ssh-keygen could not create {path}", why, "check that the folder is writable")
    return path, pub


def sign(sums: Path, key: Path) -> Path:
    """Sign the SHA256SUMS file ``sums`` with private ``key``; the signature lands beside it."""
    key = Path(key)
    if not key.is_file():
        raise UsageError(f"signing key {key} not found", "", "create one with `cahp-edge keygen --out KEY`")
    r = _run(["-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE, str(sums)], "sign the release")
    sig = Path(str(sums) + ".sig")
    if r.returncode != 0 or not sig.is_file():
        why = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no signature written"]
        raise PackageError(f"could not sign with {key}", why[0][:200],
                           "pass the private key from `cahp-edge keygen` (not the .pub file)")
    return sig


def check_signature(pkg: Path, public_key: Path) -> str:
    """Refuse a release whose SHA256SUMS is unsigned or not signed by ``public_key``; return its key line."""
    pkg, public_key = Path(pkg), Path(public_key)
    sig = pkg / SIGNATURE
    try:
        pub = public_key.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read public key {public_key}", str(e), "pass the .pub file") from e
    if not pub.startswith("ssh-") or "PRIVATE KEY" in pub:
        raise UsageError(f"{public_key} is not an OpenSSH public key", "", "pass the .pub file from keygen")
    if not sig.is_file():
        raise PackageError(f"{pkg} is not signed", f"{SIGNATURE} is missing and a key was required",
                           "use a release built with --sign-key, or drop --public-key")
    with tempfile.TemporaryDirectory(prefix="cahp-sig-") as d:
        allowed = Path(d) / "allowed_signers"
        allowed.write_text(f'{IDENTITY} namespaces="{NAMESPACE}" {pub}\n', encoding="utf-8")
        r = _run(["-Y", "verify", "-f", str(allowed), "-I", IDENTITY, "-n", NAMESPACE, "-s", str(sig)],
                 "check the signature", stdin=(pkg / "SHA256SUMS").read_bytes())
    if r.returncode != 0:
        raise PackageError(f"signature check failed for {pkg}",
                           "SHA256SUMS is not signed by that key (wrong key, or the release was changed)",
                           "get the release again from its builder, or check which key signed it")
    return pub
