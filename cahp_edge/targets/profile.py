"""Target profiles: where a model will run, how to quantize it for that CPU, and what it must achieve.

`cahp-edge targets list` / `cahp-edge targets show NAME` print them; `load_target(name_or_path)` is
the one entry point for code. Profiles are data (targets/*.toml, shipped as package data under
``cahp_edge/targets_data``); a user may also pass a path to their own .toml. The schema is documented
in targets/README.md.

A profile may declare ``detect = true`` (the ``host`` profile): architecture, CPU model and ISA
features then come from this machine. Any profile may list ``[[recipes]]`` instead of one
``[quantization]`` table; the first recipe whose ``requires`` features the target has is used. That keeps
CPU-specific choices in the TOML files rather than in ``if arm64:`` branches here.
"""

from __future__ import annotations

import platform
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cahp_edge.errors import TargetError, validation_line
from cahp_edge.runtime.sysinfo import read_cpuinfo

Arch = Literal["x86_64", "aarch64"]
QType = Literal["uint8", "int8"]

# ISA features that change which int8/fp kernels ONNX Runtime picks; `host` records only these so
# a report stays readable (the full flag list of the CPU goes into validate's JSON separately).
KNOWN_FEATURES = (
    # x86_64 (/proc/cpuinfo "flags")
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16",
    # aarch64 (/proc/cpuinfo "Features"): asimd = NEON, asimddp = dot product (SDOT/UDOT), i8mm = SMMLA
    "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve", "sve2",
)

# device names Windows refuses as file names (a release is copied to many systems), and endings
# cahp-edge's own files use beside releases (<target>.tar.gz, temporaries)
RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                  *(f"lpt{i}" for i in range(10))}
RESERVED_SUFFIXES = (".tar.gz", ".partial", ".lock", ".tmp")
ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class QuantRecipe(_Strict):
    """How quantize.py turns the fp32 graph into the one shipped to this target."""

    mode: Literal["dynamic", "static", "fp16", "none"]
    format: Literal["QOperator", "QDQ"] = "QOperator"
    per_channel: bool
    reduce_range: bool
    activation_type: QType
    weight_type: QType
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_size: int = Field(default=128, ge=1, le=100_000)
    op_types: list[str] = Field(default_factory=lambda: ["MatMul", "Attention"])
    exclude_nodes: list[str] = Field(default_factory=list)
    why: str = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> QuantRecipe:
        if self.mode == "dynamic" and self.activation_type != "uint8":
            # ORT computes dynamic activation scales with DynamicQuantizeLinear, which only emits uint8
            raise ValueError("activation_type: dynamic quantization only supports uint8 activations "
                             "(set activation_type = \"uint8\" or mode = \"static\")")
        if self.mode in ("dynamic", "static") and not self.op_types:
            raise ValueError("op_types: empty, so nothing would be quantized (list e.g. [\"MatMul\"] "
                             "or set mode = \"none\")")
        return self


class Benchmark(_Strict):
    batch: int = Field(ge=1, le=4096)
    seq_len: int = Field(ge=1, le=8192)
    warmup: int = Field(ge=0, le=100_000)
    runs: int = Field(ge=1, le=1_000_000)


class Budgets(_Strict):
    max_accuracy_drop: float = Field(ge=0.0, lt=1.0)  # fraction of accuracy, 0.01 = one point
    p90_latency_ms: float = Field(gt=0.0)
    max_size_mb: float = Field(gt=0.0)
    max_peak_memory_mb: float = Field(gt=0.0)


class Recipe(_Strict):
    """A quantization recipe guarded by the ISA features (and optionally arch) it needs."""

    requires: list[str] = Field(default_factory=list)
    arch: Arch | None = None
    quantization: QuantRecipe


class Target(_Strict):
    # the release folder's name: starts with a letter or digit (so never ".", ".." or a hidden name)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str
    arch: Arch
    cpu: str = Field(min_length=1)  # e.g. cortex-a72: pins QEMU's emulated core; the CPU model for host
    isa_features: list[str]
    execution_providers: list[str] = Field(min_length=1)
    threads: int = Field(ge=0, le=256)  # 0 = ORT default (physical cores)
    opset: int = Field(ge=11, le=25)
    optimize: bool
    # ONNX Runtime graph rewrites to turn off in the session (names as ORT spells them), for rewrites
    # measured to slow this target down; the runner, validate and the model card apply/say them
    disabled_optimizers: list[Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]*$")]] = []
    formats: list[Literal["onnx", "ort"]] = Field(min_length=1)
    # heads + neurons plans keep a multiple of this many FFN neurons per layer (what the target's int8
    # kernels prefer; 1 = any width). Measured per profile: bench/records/units.md
    neuron_multiple: int = Field(default=1, ge=1, le=256)
    quantization: QuantRecipe
    benchmark: Benchmark
    budgets: Budgets
    source: str = ""  # where the profile came from (file path); filled by load_target

    @model_validator(mode="after")
    def _release_name(self) -> Target:
        stem = self.name.split(".")[0].lower()
        if stem in RESERVED_NAMES or self.name.lower().endswith(RESERVED_SUFFIXES):
            raise ValueError(f"name: {self.name!r} cannot name a release folder (reserved by the OS or "
                             "by cahp-edge's own files); pick another")
        return self

    @model_validator(mode="after")
    def _providers(self) -> Target:
        if self.execution_providers[-1] != "CPUExecutionProvider":
            raise ValueError("execution_providers: must end with \"CPUExecutionProvider\" so every "
                             "operator has a fallback")
        return self

    def summary(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def targets_dir() -> Path:
    """The folder of shipped profiles (package data; a symlink to the repo's targets/ in a checkout)."""
    return Path(str(resources.files("cahp_edge") / "targets_data"))


def list_targets() -> list[str]:
    d = targets_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


# --- host detection --------------------------------------------------------------------------


def host_arch() -> str:
    m = platform.machine().lower()
    if m not in ARCH_ALIASES:
        raise TargetError(f"this machine's architecture '{m}' has no target support",
                          "profiles cover x86_64 and aarch64", "use a named target and a remote --device")
    return ARCH_ALIASES[m]


def host_features(flags: list[str] | None = None) -> list[str]:
    if flags is None:
        flags = read_cpuinfo()[1]
    have = set(flags)
    return [f for f in KNOWN_FEATURES if f in have]


def pick_recipe(recipes: list[Recipe], arch: str, features: list[str]) -> Recipe:
    have = set(features)
    for r in recipes:
        if (r.arch is None or r.arch == arch) and set(r.requires) <= have:
            return r
    raise ValueError(f"recipes: none matches arch {arch} with features {sorted(have)} "
                     "(add a last recipe with requires = [] as the fallback)")


# --- loading ---------------------------------------------------------------------------------


def _resolve(name_or_path: str | Path) -> Path:
    s = str(name_or_path)
    p = Path(s).expanduser()
    if s.endswith(".toml") or "/" in s or p.exists():
        if not p.is_file():
            raise TargetError(f"target profile {p} not found", "no such file",
                              f"check the path, or use a shipped name: {', '.join(list_targets())}")
        return p
    shipped = targets_dir() / f"{s}.toml"
    if not shipped.is_file():
        known = ", ".join(list_targets()) or "(none installed)"
        raise TargetError(f"unknown target '{s}'", f"known targets: {known}",
                          "pick one of them or pass a path to your own .toml (see targets/README.md)")
    return shipped


def parse_target(raw: dict[str, Any], source: str = "<dict>",
                 cpuinfo: tuple[str, list[str]] | None = None, machine: str | None = None) -> Target:
    """Validate a profile dict. cpuinfo/machine override host detection (tests, remote devices)."""
    raw = dict(raw)
    try:
        if raw.pop("detect", False) is True:
            model, flags = cpuinfo if cpuinfo is not None else read_cpuinfo()
            for key in ("arch", "cpu", "isa_features"):
                if key in raw:
                    raise ValueError(f"{key}: set by detection in a profile with detect = true; remove it")
            raw["arch"] = ARCH_ALIASES.get((machine or "").lower()) or host_arch()
            raw["cpu"] = model
            raw["isa_features"] = host_features(flags)
        if "recipes" in raw:
            if "quantization" in raw:
                raise ValueError("quantization: give either [quantization] or [[recipes]], not both")
            recipes = raw.pop("recipes")
            if not isinstance(recipes, list) or not recipes:
                raise ValueError("recipes: must be a non-empty array of tables ([[recipes]])")
            parsed = [Recipe.model_validate(r) for r in recipes]
            arch, feats = raw.get("arch"), raw.get("isa_features")
            if not isinstance(arch, str) or not isinstance(feats, list):
                raise ValueError("recipes: need arch and isa_features to choose from")
            raw["quantization"] = pick_recipe(parsed, arch, feats).quantization
        raw["source"] = source
        return Target.model_validate(raw)
    except ValidationError as e:
        raise TargetError(f"invalid target profile {source}", validation_line(e),
                          "fix the named key (schema: targets/README.md)") from None
    except ValueError as e:
        raise TargetError(f"invalid target profile {source}", str(e),
                          "fix the named key (schema: targets/README.md)") from None


def load_target(name_or_path: str | Path) -> Target:
    """A shipped profile by name (`rpi4-arm64`) or a path to a .toml file."""
    path = _resolve(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"target profile {path} is not valid TOML", str(e),
                          "fix the syntax at the given line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TargetError(f"cannot read target profile {path}", str(e), "check the file") from None
    return parse_target(raw, source=str(path))
