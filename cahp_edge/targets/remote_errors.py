"""What went wrong on a remote device, from what ssh, scp, adb or the runner printed.

Used by cahp_edge.targets.remote: ``classify(label, text)`` turns their output into one DeviceError line
(what, the line that shows it, how to fix it), or None when nothing known matches.
"""

from __future__ import annotations

import re

from cahp_edge.errors import DeviceError

# (pattern in stderr/stdout, what, fix); first match wins, so specific patterns come first
_PATTERNS: list[tuple[str, str, str]] = [
    (
        r"REMOTE HOST IDENTIFICATION HAS CHANGED",
        "the host key of {dev} has CHANGED since it was recorded",
        "if the device was reinstalled, remove the old key with `ssh-keygen -R HOST` (or edit the "
        "known_hosts file) and verify the new one; otherwise someone may be intercepting the connection",
    ),
    (
        r"No \S+ host key is known|Host key verification failed|host key for .* not known",
        "the host key of {dev} is unknown",
        "connect once interactively (`ssh USER@HOST`) and check the fingerprint, or pass a known_hosts file "
        "that lists it",
    ),
    (
        r"Permission denied \(|Too many authentication failures|Authentication failed",
        "authentication to {dev} was refused",
        "check the user name and install your public key on the device (ssh-copy-id), or pass the right "
        "identity file",
    ),
    (
        r"Could not resolve hostname|Name or service not known|Temporary failure in name resolution",
        "cannot resolve the host name of {dev}",
        "check the host name, or use the device's IP address",
    ),
    (
        r"Connection refused|No route to host|Network is unreachable|Connection timed out|"
        r"Connection closed by|Connection reset|timed out during banner exchange|"
        r"port \d+: Operation timed out",
        "{dev} is unreachable",
        "check the device is on, on the network, and runs an SSH server on that port",
    ),
    (
        r"device '.*' not found|no devices/emulators found|device offline|device unauthorized|"
        r"device not found",
        "{dev} is not connected",
        "plug it in, enable USB debugging and accept the prompt; check `adb devices`",
    ),
    (
        r"No space left on device|ENOSPC|Disk quota exceeded",
        "{dev} is out of disk space",
        "free space in the device's temporary folder (the package needs its size plus a few MB)",
    ),
    (
        r"No module named '?(onnxruntime|numpy|tokenizers)'?|python module '(onnxruntime|numpy|tokenizers)' "
        r"is not installed",
        "python on {dev} lacks the module '{mod}'",
        "install the runner's dependencies on the device: pip install onnxruntime numpy tokenizers",
    ),
    (
        r"(python3?|\S*/python3?\S*): (command )?not found|python3?: No such file|can't execute|"
        r"inaccessible or not found",
        "python3 is not installed on {dev}",
        "install Python 3 on the device (Termux: pkg install python) or pass ?python=/path/to/python3",
    ),
]


def classify(label: str, text: str) -> DeviceError | None:
    for pat, what, fix in _PATTERNS:
        m = re.search(pat, text)
        if m:
            mod = next((g for g in m.groups() if g), "") if m.groups() else ""
            return DeviceError(what.format(dev=label, mod=mod), tail(text), fix)
    return None


def tail(text: str, n: int = 200) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("@@@")]
    last = lines[-1] if lines else "(no output)"
    return last if len(last) <= n else last[: n - 3] + "..."
