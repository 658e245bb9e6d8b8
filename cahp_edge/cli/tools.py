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


@app.command()
def keygen(
    out: Annotated[Path, typer.Option(help="Private key file to create (KEY; the public half is KEY.pub).")],
    as_json: Json = False,
) -> None:
    """Create an Ed25519 key pair (OpenSSH) to sign releases: build --sign-key, verify --public-key."""
    from cahp_edge.release.signing import keygen as make

    priv, pub = make(out)
    emit({"private_key": str(priv), "public_key": str(pub)}, as_json,
         f"{priv} (private: keep it off devices and out of releases)\n{pub} (public: give it to whoever "
         "verifies)")
