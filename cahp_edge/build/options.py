"""Options of `cahp-edge build`: one strict model shared by the CLI, a `--config build.toml` and Python.

A config file holds the same keys as the command-line options (dashes or underscores), at top level
or under a ``[build]`` table; options given on the command line win. Unknown keys are errors.

    # build.toml
    model = "ckpt/"
    data = "train.tsv"
    eval = "dev.tsv"
    targets = ["rpi5-arm64", "x86-64-avx2"]
    degree = 3
    recover_epochs = 1
    [benchmark]        # overrides every target's benchmark settings (tests, quick runs)
    runs = 20
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from cahp_edge.data.options import DataOptions
from cahp_edge.deploy.options import QuantizeOptions
from cahp_edge.errors import UsageError, validation_line
from cahp_edge.options import opt
from cahp_edge.prune.options import PruneOptions
from cahp_edge.targets.options import ValidateOptions
from cahp_edge.train.options import RecoverOptions


class BuildOptions(ValidateOptions, QuantizeOptions, RecoverOptions, PruneOptions, DataOptions):
    """Every stage's options (inherited from the stages' own models) plus what the build itself needs.

    A stage's options are taken out with ``StageModel.pick(build_options)``: the stage function and
    the cache key then see exactly the same values (tests/build/test_options.py checks the derivation).
    """

    model: str = opt(..., "Fine-tuned classifier: folder or hub id.")
    data: str = opt(..., "Training data (calibration, selection, recovery).")
    eval: str | None = opt(None, "Evaluation data (reported accuracy).")
    select: str | None = opt(
        None, "Knee-selection data (default: rows of --data); use rows the model was not fine-tuned on. "
        "Without a label column the dense model's predictions label them.")
    targets: list[str] = Field(default_factory=list, description="Target name or .toml; repeat.")
    out: str = opt("dist", "Release folder: dist/<target>/ + <target>.tar.gz.")
    name: str | None = opt(None, "How reports name the model (default: the --model value).")
    trust_pickle: bool = opt(False, "Allow pytorch_model.bin (unpickling runs code from the file).")
    sign_key: str | None = opt(
        None, "Private key (from `cahp-edge keygen`) that signs each release's SHA256SUMS; never copied.")
    keep_pytorch: bool = opt(
        False, "Also ship the pruned PyTorch model as pytorch/ (safetensors; cahp_edge.model.load_pruned).")
    allow_weak_model: bool = opt(
        False, "Build even when the dense model is no better than the majority class (evaluation split).")

    def __init__(self, **data: Any) -> None:
        # plain pydantic errors: make_options reports them by build.toml key / option, with the file name
        BaseModel.__init__(self, **data)


def _norm_keys(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out[k.replace("-", "_")] = _norm_keys(v) if isinstance(v, dict) else v
    if "target" in out and "targets" not in out:  # `target = "x"` reads naturally in a file
        t = out.pop("target")
        out["targets"] = t if isinstance(t, list) else [t]
    return out


def read_config(path: Path) -> dict[str, Any]:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read config file {p}", str(e), "pass an existing build.toml") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"config file {p} is not valid TOML", str(e), "fix the syntax") from e
    if isinstance(raw.get("build"), dict):
        extra = sorted(set(raw) - {"build"})
        if extra:
            raise UsageError(
                f"config file {p}: keys {extra} outside [build]",
                "",
                "put every option under [build] or all at top level",
            )
        raw = raw["build"]
    return _norm_keys(raw)


def make_options(cli: dict[str, Any], config: Path | None = None) -> BuildOptions:
    """Merge config file and command-line values (None / empty = not given on the command line)."""
    merged = read_config(config) if config else {}
    for k, v in _norm_keys(cli).items():
        if k == "benchmark":
            given = {a: b for a, b in v.items() if b is not None}
            merged["benchmark"] = {**merged.get("benchmark", {}), **given}
        elif v is not None and v != []:
            merged[k] = v
    src = f"config file {config}" if config else "options"
    try:
        return BuildOptions.model_validate(merged)
    except ValidationError as e:
        raise UsageError(
            f"invalid build {src}",
            validation_line(e, "option"),
            "see `cahp-edge build --help` for the options and their ranges",
        ) from None
