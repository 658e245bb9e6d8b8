"""Device-side runner: measures a packaged model where it will run.

    python -m cahp_edge.runtime profile PACKAGE_DIR --json [--data eval.jsonl] [--threads N] ...
    python -m cahp_edge_runtime profile . --json     # inside a release: its own copy of this folder

Imports only the standard library, onnxruntime, numpy and tokenizers (never torch or transformers),
and only relatively, so this folder works under any package name: every release carries a copy as
``cahp_edge_runtime/``, which is all a Raspberry Pi or Termux needs. Nothing here imports the rest of
cahp_edge.
"""

SCHEMA = "cahp-edge-profile/1"
# How accuracy is measured, here, on the host and in a release's run.py: length-sorted batches of this
# many rows, each padded to its own longest row. It is stated wherever accuracy is reported because
# int8 with dynamic quantization takes one activation scale per tensor, i.e. per batch: which rows
# share a batch changes the logits slightly (on MiniLM SST-5 up to 0.4 in a logit).
EVAL_BATCH_SIZE = 16


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
