"""Check a release's SHA256SUMS.sig on the device with OpenSSH (``ssh-keygen -Y verify``): standard
library only, like the rest of the runner. The host side (signing, ``cahp-edge verify``) is
cahp_edge/release/signing.py; both use the same namespace and identity."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from . import RunnerError

NAMESPACE = "cahp-edge-release"
IDENTITY = "cahp-edge"


def check_signature(root: Path, public_key: Path) -> None:
    sig, sums = Path(root) / "SHA256SUMS.sig", Path(root) / "SHA256SUMS"
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise RunnerError("runtime", "ssh-keygen is not installed", "checking signatures uses OpenSSH",
                          "apt install openssh-client")
    try:
        pub = Path(public_key).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise RunnerError("usage", f"cannot read public key {public_key}", str(e),
                          "pass the .pub file") from None
    if not sig.is_file() or not sums.is_file():
        raise RunnerError("package", f"{root} is not signed", "SHA256SUMS.sig is missing and a key was given",
                          "use a release built with --sign-key, or drop --public-key")
    with tempfile.TemporaryDirectory(prefix="cahp-sig-") as d:
        allowed = Path(d) / "allowed_signers"
        allowed.write_text(f'{IDENTITY} namespaces="{NAMESPACE}" {pub}\n', encoding="utf-8")
        r = subprocess.run([exe, "-Y", "verify", "-f", str(allowed), "-I", IDENTITY, "-n", NAMESPACE, "-s",
                            str(sig)], input=sums.read_bytes(), capture_output=True, timeout=60, check=False)
    if r.returncode != 0:
        raise RunnerError("package", f"signature check failed for {root}",
                          "SHA256SUMS is not signed by that key (wrong key, or the release was changed)",
                          "get the release again from its builder")
