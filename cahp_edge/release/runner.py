"""What a device needs from a release besides the model: the runner and a usage example.

Every release carries ``cahp_edge_runtime/`` (a copy of :mod:`cahp_edge.runtime`, whose imports are
relative and limited to onnxruntime, numpy and tokenizers) and ``run.py`` (``run_example.py`` here),
so ``python -m cahp_edge_runtime profile . --json`` and ``python run.py "text"`` work from the release
folder on a device that has never seen cahp-edge.
"""

from __future__ import annotations

from pathlib import Path

from cahp_edge import runtime

RUNNER_PACKAGE = "cahp_edge_runtime"
EXAMPLE = Path(__file__).with_name("run_example.py")


def device_files() -> dict[str, Path]:
    """Release-relative name -> source file for the runner package and run.py."""
    files = {f"{RUNNER_PACKAGE}/{p.name}": p for p in sorted(Path(runtime.__file__).parent.glob("*.py"))}
    files["run.py"] = EXAMPLE
    return files
