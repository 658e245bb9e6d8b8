"""What machine and runtime a measurement came from (CPU model and flags, memory, versions)."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path


def read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """(CPU model, all flags) from /proc/cpuinfo (x86 "flags", ARM "Features"); fallbacks elsewhere."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine() or "unknown", []
    model, part, flags = "", "", []
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = val.strip()
        elif key in ("flags", "features") and not flags:
            flags = val.split()
        elif key == "cpu part" and not part:
            part = val.strip()
    if not model and part:
        # ARM kernels give no model name; the part number names the core (0xd08 = Cortex-A72)
        model = _ARM_PARTS.get(part.lower(), f"arm cpu part {part}")
    return model or platform.processor() or "unknown", flags


_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
              "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
              "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
              "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd4d": "Cortex-A715"}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (monotonic).

    Linux's VmHWM belongs to this program's address space. ru_maxrss is not enough there: it survives
    exec, so a runner started by a big parent (a test runner with torch loaded) reports the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return None


def system_info() -> dict:
    model, flags = read_cpuinfo()
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "release": platform.release(),
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        # set by QEMU user mode wrappers we ship; a latency measured under emulation is not device latency
        "emulated": os.environ.get("CAHP_EMULATED", "") not in ("", "0"),
    }
