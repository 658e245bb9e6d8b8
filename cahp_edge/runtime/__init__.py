"""Device-side runner: measures a packaged model where it will run.

    python -m cahp_edge.runtime profile PACKAGE_DIR --json [--data eval.jsonl] [--threads N] ...

Imports only the standard library, onnxruntime, numpy and tokenizers (never torch or transformers),
so ``cahp_edge/__init__.py`` plus this folder is all a Raspberry Pi or Termux needs. Nothing here
imports the rest of cahp_edge.
"""

SCHEMA = "cahp-edge-profile/1"


class RunnerError(Exception):
    """A failure the device's user can act on: one line with what, why and how to fix it.

    ``kind`` lets the host map it to its own error classes (package, data, runtime, usage).
    """

    def __init__(self, kind: str, what: str, why: str = "", fix: str = "") -> None:
        self.kind, self.what, self.why, self.fix = kind, what, why, fix
        msg = what.rstrip(".") + (f": {why.rstrip('.')}" if why else "")
        msg += f". Fix: {fix.rstrip('.')}" if fix else ""
        super().__init__(" ".join(msg.split()))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": str(self), "what": self.what, "why": self.why, "fix": self.fix}
