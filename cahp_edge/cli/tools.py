"""`cahp-edge optimum-env`: the side environment optimum-onnx needs (see cahp_edge/sideenv.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cahp_edge.cli.app import Json, Quiet, app, emit, note


@app.command("optimum-env")
def optimum_env(
    dest: Annotated[Path, typer.Argument(help="Folder for the new virtual environment, e.g. .venv-optimum.")],
    extra: Annotated[list[str] | None, typer.Option(
        metavar="REQUIREMENT", help="Another package to install there (pip requirement); repeat.")] = None,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Build a virtual environment with optimum-onnx (transformers 4.57), torch, onnxruntime and cahp-edge."""
    from cahp_edge.sideenv import make_optimum_env

    env = make_optimum_env(dest, tuple(extra or ()), log=(lambda _m: None) if quiet else note)
    word = "up to date" if env.reused else "ready"
    emit({"path": str(env.path), "python": str(env.python), "packages": env.packages, "reused": env.reused},
         as_json,
         f"{env.path}: {word}. Use it with `{env.python} your_script.py`, e.g.\n"
         f"  {env.python} -c \"from optimum.onnxruntime import ORTModelForSequenceClassification as M; "
         f"print(M.from_pretrained('dist/host', file_name='model.onnx'))\"")
