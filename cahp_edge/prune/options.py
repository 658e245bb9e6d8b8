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
        Method("magnitude", "cahp_edge.prune.baselines:Magnitude", "weight magnitude of each head"),
        Method("random", "cahp_edge.prune.baselines:Random", "random heads (seeded)"),
        Method("uniform", "cahp_edge.prune.baselines:Uniform",
               "the same number of heads per layer, by importance"),
    )
}

MethodName = Literal["cahp", "michel", "oneshot", "magnitude", "random", "uniform"]  # == METHODS (tested)


class PruneOptions(CahpOptions):
    """Which method, and how many heads: a fixed budget, or the knee of the accuracy curve."""

    method: MethodName = opt("cahp", "Selection method.")
    degree: int = opt(3, "Polynomial degree of the knee fit.", ge=1, le=10)
    max_drop: float | None = opt(
        None, "Max selection-accuracy drop at the knee, in accuracy points.", ge=0.0, le=100.0)
    heads: int | None = opt(None, "Keep exactly N heads (skips the knee).", ge=1)
    keep_ratio: float | None = opt(None, "Keep this fraction of heads (skips the knee).", gt=0.0, le=1.0)
    floor: int | None = opt(None, "Smallest head count the knee sweep tries (default: heads // 16).", ge=1)
    grid_points: int = opt(14, "Head counts the knee sweep tries.", ge=3, le=200)
    seed: int = opt(0, "Seed for splits, selection and training.")

    @model_validator(mode="after")
    def _one_budget(self) -> PruneOptions:
        if self.heads is not None and self.keep_ratio is not None:
            raise ValueError("--heads and --keep-ratio both given: they set the same budget; pass only one")
        return self

    def method_options(self) -> dict[str, Any]:
        """The keyword options the chosen method's selector takes (its own options model's fields)."""
        m = METHODS[self.method]
        return m.options.pick(self).model_dump() if m.options else {}
