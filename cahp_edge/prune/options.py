"""Options of the prune stage and the registry of selection methods (torch-free: the CLI imports it).

    PruneOptions(method="cahp", max_drop=1.0)   # points of selection accuracy, 0..100
    METHODS["michel"].load()                     # the selector class (imports torch)

A new selection method is one module with its selector class plus one :class:`Method` entry in
:data:`METHODS`; when it has options of its own, they are one more ``StageOptions`` model listed
as its ``options`` and added to :class:`PruneOptions`' bases (a test fails if one is missing).
Everything else (the CLI flags of `prune` and `build`, `build.toml` keys, the plan's record of the
options, the build cache key) is derived from these models.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import model_validator

from cahp_edge.options import StageOptions, opt


class CahpOptions(StageOptions):
    """CAHP's own options (the defaults were chosen on a train decision split: docs/cahp.md)."""

    clustering: Literal["spectral", "agglomerative"] = opt("spectral", "CAHP graph clustering.")
    schedule: Literal["iterative", "oneshot"] = opt(
        "iterative", "CAHP schedule: iterative (re-scored rounds) or oneshot.")
    salience_weight: float = opt(
        1.0, "CAHP: gamma of the salience-aware graph (0 = plain JSD graph).", ge=0.0)
    salience_kind: Literal["abs", "fisher"] = opt(
        "abs", "CAHP salience: abs (E|dL/dm|) or fisher (E (dL_x/dm)^2).", cli="--salience")
    salience_labels: Literal["predicted", "gold"] = opt(
        "predicted", "CAHP salience loss against: predicted (the dense model's labels) or gold.")
    round_fraction: float = opt(
        0.5, "CAHP: share of calibration data per salience round after the first.", gt=0.0, le=1.0)
    loss_below: float = opt(
        0.0, "CAHP: at <= this fraction of heads, representatives by measured loss (0 = off).",
        ge=0.0, le=1.0)
    coverage_from: float = opt(
        0.125, "CAHP: keep ratio at or above which salience alone decides (no cluster is protected).",
        ge=0.0, le=1.0)
    coverage_full: float = opt(
        0.0625, "CAHP: keep ratio at or below which every kept head represents its own cluster.",
        ge=0.0, le=1.0, examples=[0.03125, 0.0])

    @model_validator(mode="after")
    def _coverage_order(self) -> CahpOptions:
        if self.coverage_full > self.coverage_from:
            raise ValueError(
                f"--coverage-full {self.coverage_full} is above --coverage-from {self.coverage_from}: "
                "full coverage must start at or below the keep ratio where coverage starts")
        return self


# points of selection accuracy the automatic knee may lose before recovery: what the default recovery
# brought back to within 1 point of dense on held-out training data (docs/cahp.md, "The knee's guard")
DEFAULT_MAX_DROP = 3.0
# heads + neurons plans are judged after the least-squares re-fit, i.e. after the default CPU recovery:
# the guard is then the accuracy goal itself
DEFAULT_MAX_DROP_RECONSTRUCTED = 1.0
# methods that mean heads + neurons when --units is left to auto (a named head method keeps its meaning
# from before heads + neurons existed: its plans stay head plans)
JOINT_BY_DEFAULT = ("auto", "fisher")
JOINT_METHODS = ("fisher", "cahp", "uniform")  # the methods that select heads and neurons together


@dataclass(frozen=True)
class Method:
    """One selection method: its name, where its selector lives, and its own options model (if any)."""

    name: str
    selector: str  # "module:Class"; imported only when heads are selected (torch)
    summary: str
    options: type[StageOptions] | None = None

    def load(self) -> Any:
        module, _, attr = self.selector.partition(":")
        return getattr(importlib.import_module(module), attr)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("cahp", "cahp_edge.prune.cahp:CAHP",
               "complementary heads: JSD head graph, clustering, salience", CahpOptions),
        Method("michel", "cahp_edge.prune.baselines:Michel",
               "Michel et al.: iterative gradient importance, re-scored each round"),
        Method("oneshot", "cahp_edge.prune.baselines:OneShot", "gradient importance, scored once"),
        Method("fisher", "cahp_edge.prune.baselines:Fisher",
               "Kwon et al.: diagonal Fisher of the masks, top-k (with neurons: their MAC-budget search)"),
        Method("magnitude", "cahp_edge.prune.baselines:Magnitude", "weight magnitude of each head"),
        Method("random", "cahp_edge.prune.baselines:Random", "random heads (seeded)"),
        Method("uniform", "cahp_edge.prune.baselines:Uniform",
               "the same number of heads per layer, by importance"),
    )
}

MethodName = Literal["cahp", "michel", "oneshot", "fisher", "magnitude", "random", "uniform"]  # == METHODS
MethodChoice = Literal["auto", "cahp", "michel", "oneshot", "fisher", "magnitude", "random", "uniform"]


class PruneOptions(CahpOptions):
    """Which method, and how many heads: a fixed budget, or the knee of the accuracy curve."""

    method: MethodChoice = opt(
        "auto", "Selection method (auto: fisher for heads + neurons, cahp for heads alone; measured in "
        "docs/cahp.md).")
    units: Literal["auto", "heads", "heads+neurons"] = opt(
        "auto", "What to prune: attention heads, or heads and FFN neurons under one budget (methods "
        "cahp, fisher, uniform). auto: heads + neurons with the default method or fisher and no "
        "--heads/--keep-ratio; heads alone with a named head method (cahp, michel, ...).")
    speedup: float | None = opt(
        None, "Keep at most 1/S of the dense model's cost: latency when measured for the build's first "
        "target, else MACs at the data's mean length (skips the knee).", ge=1.0, examples=[2.0, 3.0])
    latency_budget_ms: float | None = opt(
        None, "Keep the most accurate plan whose predicted p50 on the build's first target is at most X "
        "ms (--units heads+neurons; needs a measured cost model).", gt=0.0)
    knee_accuracy: Literal["reconstructed", "masked"] = opt(
        "reconstructed", "Heads+neurons: the selection accuracy each budget is judged by: after the "
        "least-squares re-fit on the calibration rows (what --recover-method reconstruct ships) or masked.")
    cost_model: Literal["auto", "macs"] = opt(
        "auto", "What a plan costs: auto (latency measured for the build's first target when this host "
        "runs its instruction set, else MACs) or macs.")
    degree: int = opt(3, "Polynomial degree of the knee fit.", ge=1, le=10)
    max_drop: float | None = opt(
        None,
        f"Most selection-accuracy points the automatic knee may lose vs dense (100 = no guard; default "
        f"{DEFAULT_MAX_DROP:g} for head plans, judged before recovery, {DEFAULT_MAX_DROP_RECONSTRUCTED:g} "
        "for heads + neurons, judged after the re-fit).", ge=0.0, le=100.0)
    heads: int | None = opt(None, "Keep exactly N heads (skips the knee).", ge=1)
    keep_ratio: float | None = opt(None, "Keep this fraction of heads (skips the knee).", gt=0.0, le=1.0)
    floor: int | None = opt(None, "Smallest head count the knee sweep tries (default: heads // 16).", ge=1)
    grid_points: int = opt(14, "Head counts the knee sweep tries.", ge=3, le=200)
    seed: int = opt(0, "Seed for splits, selection and training.")
    rivals: str = opt(
        "oneshot,uniform",  # one salience pass each; michel adds a full descent (~1 min on MiniLM)
        "Methods also scored at the chosen head count on the selection split; a better one is "
        "reported with its numbers (comma-separated; 'none' = off).",
        examples=["none", "michel,oneshot,uniform"])

    @model_validator(mode="after")
    def _resolve_auto(self) -> PruneOptions:
        """"auto" units, method and max_drop become concrete values here, so the plan, the manifest and
        the cache key all record what ran."""
        updates: dict[str, Any] = {}
        units = self.units
        if units == "auto":
            head_budget = self.heads is not None or self.keep_ratio is not None
            units = "heads+neurons" if self.method in JOINT_BY_DEFAULT and not head_budget else "heads"
            updates["units"] = units
        if self.method == "auto":
            updates["method"] = "fisher" if units == "heads+neurons" else "cahp"
        if self.max_drop is None:
            joint = units == "heads+neurons" and self.knee_accuracy == "reconstructed"
            updates["max_drop"] = DEFAULT_MAX_DROP_RECONSTRUCTED if joint else DEFAULT_MAX_DROP
        for k, v in updates.items():  # object.__setattr__: no re-validation loop
            object.__setattr__(self, k, v)
        return self

    @model_validator(mode="after")
    def _one_budget(self) -> PruneOptions:
        given = (("--heads", self.heads), ("--keep-ratio", self.keep_ratio), ("--speedup", self.speedup),
                 ("--latency-budget-ms", self.latency_budget_ms))
        budgets = [n for n, v in given if v is not None]
        if len(budgets) > 1:
            raise ValueError(f"{' and '.join(budgets)} both given: they set the same budget; pass only one")
        if self.units == "heads+neurons":  # checked here, so a build stops before its first stage
            if self.method not in JOINT_METHODS:
                raise ValueError(f"--method {self.method} selects attention heads only; with --units "
                                 f"heads+neurons pass --method {' / '.join(JOINT_METHODS)} "
                                 "(or --units heads)")
            if self.heads is not None or self.keep_ratio is not None:
                raise ValueError("--heads/--keep-ratio count heads, but --units heads+neurons budgets cost: "
                                 "pass --speedup S instead")
        elif self.latency_budget_ms is not None:
            raise ValueError("--latency-budget-ms budgets heads and FFN neurons together: it needs --units "
                             "heads+neurons (for heads alone pass --heads or --speedup)")
        unknown = [r for r in self.rival_methods() if r not in METHODS]
        if unknown:
            raise ValueError(f"--rivals names unknown method(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(METHODS)} or 'none'")
        return self

    def rival_methods(self) -> list[str]:
        """The rival methods to score, without the chosen method itself."""
        names = [r.strip() for r in self.rivals.split(",") if r.strip()]
        return [] if names == ["none"] else [r for r in dict.fromkeys(names) if r != self.method]

    def method_options(self) -> dict[str, Any]:
        """The keyword options the chosen method's selector takes (its own options model's fields)."""
        m = METHODS[self.method]
        return m.options.pick(self).model_dump() if m.options else {}
