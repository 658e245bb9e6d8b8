"""One error model for the whole tool.

Every failure a user can cause is a :class:`CahpError` carrying *what* went wrong, *why*, and *how to
fix it*. The CLI prints ``str(err)`` as one line on stderr and exits with ``err.exit_code``:
1 for runtime errors, 2 for usage errors. Nothing else in the package prints.
"""

from __future__ import annotations


class CahpError(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1

    def __init__(self, what: str, why: str = "", fix: str = "") -> None:
        self.what, self.why, self.fix = what, why, fix
        super().__init__(self.line())

    def line(self) -> str:
        parts = [self.what.rstrip(".")]
        if self.why:
            parts.append(self.why.rstrip("."))
        msg = ": ".join(parts)
        if self.fix:
            msg += f". Fix: {self.fix.rstrip('.')}"
        return " ".join(msg.split())  # always one line


class UsageError(CahpError):
    """Bad command-line usage or contradictory options (exit 2)."""

    exit_code = 2


class ModelError(CahpError):
    """Checkpoint missing, corrupt, unsupported or unsafe."""


class UnsupportedArchitecture(ModelError):
    pass


class PlanError(CahpError):
    """Head plan malformed or inconsistent with the model."""


class DataError(CahpError):
    """Dataset missing, empty, malformed or inconsistent with the model's labels."""


class TargetError(CahpError):
    """Target profile unknown, malformed or contradictory."""


class ExportError(CahpError):
    """ONNX export, parity or graph optimization failed."""


class QuantizeError(CahpError):
    pass


class ValidateError(CahpError):
    pass


class DeviceError(CahpError):
    """A remote device (ssh/adb) is unreachable, refused us, or its runner failed."""


class PackageError(CahpError):
    """A release package is incomplete, tampered with, or unsafe to extract."""


class OutputError(CahpError):
    """The output location exists, is not writable, is locked, or the disk is full."""


def validation_line(err, noun: str = "key") -> str:
    """One line for a pydantic ValidationError: which ``noun`` (key, option) is wrong and why."""
    parts = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"])
        if not key:  # a rule over several keys states the whole problem itself
            parts.append(e["msg"].removeprefix("Value error, "))
        elif e["type"] == "extra_forbidden":
            parts.append(f"unknown {noun} '{key}'")
        elif e["type"] == "missing":
            parts.append(f"missing {noun} '{key}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            parts.append(f"{noun} '{key}': {msg}{shown}")
    return "; ".join(parts)
