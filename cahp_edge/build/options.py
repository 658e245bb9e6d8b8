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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cahp_edge.errors import UsageError, validation_line


class BenchOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch: int | None = Field(default=None, ge=1)
    seq_len: int | None = Field(default=None, ge=1)
    warmup: int | None = Field(default=None, ge=0)
    runs: int | None = Field(default=None, ge=1)


class BuildOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    data: str
    eval: str | None = None
    targets: list[str] = Field(default_factory=list)
    out: str = "dist"
    name: str | None = None  # how reports name the model (default: the --model value)
    # data
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    max_length: int = Field(default=128, ge=8, le=4096)
    seed: int = 0
    calib_size: int = Field(default=512, ge=1)
    select_size: int = Field(default=1000, ge=1)
    eval_limit: int | None = Field(default=None, ge=1)  # evaluate on the first N rows only (quick runs)
    # prune
    method: Literal["cahp", "michel", "oneshot", "magnitude", "random", "uniform"] = "cahp"
    degree: int = Field(default=3, ge=1, le=10)
    heads: int | None = Field(default=None, ge=0)
    keep_ratio: float | None = Field(default=None, gt=0.0, le=1.0)
    max_drop: float | None = Field(default=None, ge=0.0, lt=1.0)
    grid_points: int | None = Field(default=None, ge=3, le=200)  # sweep points (default: the prune stage's)
    clustering: Literal["spectral", "agglomerative"] | None = None  # CAHP graph clustering (default: prune's)
    schedule: Literal["iterative", "oneshot"] | None = None  # CAHP schedule (default: prune's)
    # recover
    recover_epochs: float = Field(default=1.0, ge=0.0)
    distill: bool = False
    learning_rate: float | None = Field(default=None, gt=0.0)
    batch_size: int = Field(default=32, ge=1)
    # quantize / validate / package
    quant_calib_size: int | None = Field(default=None, ge=1)
    benchmark: BenchOverride = Field(default_factory=BenchOverride)
    compare_dense: bool = True  # also measure the dense model (metrics.json: dense vs pruned vs int8)
    trust_pickle: bool = False

    @model_validator(mode="after")
    def _exclusive(self) -> BuildOptions:
        if self.heads is not None and self.keep_ratio is not None:
            raise ValueError("heads and keep_ratio both set: give at most one")
        return self

    def stage_options(self, *names: str) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        return {n: d[n] for n in names}


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
