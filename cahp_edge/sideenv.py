"""A side environment for optimum-onnx, which still pins transformers 4.57 (the core needs 5.x).

    cahp-edge optimum-env .venv-optimum                 # 1. build it (a few minutes, once)
    .venv-optimum/bin/python my_app.py                  # 2. use optimum there with any release folder

`pip install "cahp-edge[optimum]"` cannot resolve (transformers >=5 vs <4.58), so the optimum
stack lives in its own virtual environment: CPU torch at the same pin as the core, transformers
4.57.6, optimum-onnx, onnxruntime, and cahp-edge itself without its dependency pins (so
``cahp_edge.model.load_pruned`` works there too). CI builds its compatibility environment with this
module (.ci/setup-compat.sh) and runs optimum's ``ORTModelForSequenceClassification`` and
``pipeline()`` on releases in it.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cahp_edge.errors import CahpError, OutputError

# torch is pinned in the same install as optimum-onnx: left free, the resolver may pull a CUDA build
OPTIMUM_PACKAGES = ("torch==2.13.0", "transformers==4.57.6", "optimum-onnx", "onnxruntime", "onnx",
                    "tokenizers", "safetensors", "numpy")
STAMP = ".cahp-optimum-env"


@dataclass
class SideEnv:
    path: Path
    python: Path
    packages: list[str]
    reused: bool  # already built with the same packages: nothing installed


def _project_root() -> Path | None:
    """The checkout cahp_edge runs from, when it is one (an editable install); else None."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def _self_spec() -> list[str]:
    """pip arguments that install this cahp-edge: the checkout (editable) or the same released version."""
    root = _project_root()
    if root is not None:
        return ["-e", str(root)]
    from importlib.metadata import version

    return [f"cahp-edge=={version('cahp-edge')}"]


def make_optimum_env(dest: Path, extra: tuple[str, ...] = (), log=print) -> SideEnv:
    """Create (or re-check) ``dest`` as a venv holding the optimum stack; never touches another folder."""
    dest = Path(dest).absolute()
    py = dest / "bin" / "python"
    packages = [*OPTIMUM_PACKAGES, *extra]
    want = "\n".join([*packages, *_self_spec()])
    stamp = dest / STAMP
    if stamp.is_file() and py.exists() and stamp.read_text(encoding="utf-8") == want:
        return SideEnv(dest, py, packages, reused=True)
    if dest.exists() and any(dest.iterdir()) and not stamp.is_file():
        raise OutputError(f"{dest} exists and is not an environment made by `cahp-edge optimum-env`",
                          "it would be replaced", "pass a new folder name, or remove that folder yourself")
    log(f"optimum-env: creating {dest}")
    _run([sys.executable, "-m", "venv", "--clear", str(dest)], "create the virtual environment")
    log(f"optimum-env: installing {' '.join(packages)} (a few minutes)")
    _run([str(py), "-m", "pip", "install", "-q", *packages], "install the optimum stack")
    # cahp-edge's own pins say transformers>=5: install it without them (its imports are all present)
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", *_self_spec()], "install cahp-edge")
    _run([str(py), "-c", "import optimum.onnxruntime, transformers, cahp_edge.model.load"],
         "import optimum.onnxruntime in the new environment")
    stamp.write_text(want, encoding="utf-8")
    return SideEnv(dest, py, packages, reused=False)


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or [f"exit {r.returncode}"]
        raise CahpError(f"optimum-env could not {what}", tail[0][:300],
                        "check network access to the package index and free disk space, then re-run")
