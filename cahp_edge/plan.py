"""HeadPlan: which heads (and, optionally, which FFN neurons) every layer keeps. The one artifact
between selection and surgery.

JSON form (``plan.json`` / ``cahp_heads.json``)::

    {"format": "cahp-head-plan/1", "num_heads": [12, 12, ...], "kept": [[0, 3, 5], [], ...],
     "method": "cahp", ...free-form metadata...}

A plan that also prunes FFN neurons (issue 15) is ``cahp-plan/2`` and adds
``"num_neurons": [1536, ...]`` (intermediate width per layer in the source model) and
``"kept_neurons": [[0, 7, ...], [], ...]`` (a layer may keep none). Head-only plans stay
``cahp-head-plan/1``, byte for byte, and every reader keeps loading them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cahp_edge.errors import PlanError

FORMAT = "cahp-head-plan/1"
FORMAT_NEURONS = "cahp-plan/2"  # the same plus kept FFN neurons per layer
FORMATS = (FORMAT, FORMAT_NEURONS)
PLAN_FILE = "plan.json"  # what `cahp-edge prune --out DIR` writes in DIR


@dataclass(frozen=True)
class HeadPlan:
    num_heads: tuple[int, ...]  # heads per layer in the source model
    kept: tuple[tuple[int, ...], ...]  # sorted kept head indices per layer
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    num_neurons: tuple[int, ...] | None = None  # FFN intermediate width per layer in the source model
    kept_neurons: tuple[tuple[int, ...], ...] | None = None  # sorted kept neuron indices per layer

    def __post_init__(self) -> None:
        if len(self.num_heads) != len(self.kept):
            raise PlanError(
                "head plan is inconsistent",
                f"it lists {len(self.kept)} layers of kept heads but {len(self.num_heads)} layer sizes",
                "regenerate the plan with `cahp-edge prune`",
            )
        for layer, (n, heads) in enumerate(zip(self.num_heads, self.kept, strict=True)):
            if len(set(heads)) != len(heads):
                raise PlanError(f"head plan names a head twice in layer {layer}", f"kept={list(heads)}",
                                "list each kept head once")
            bad = [h for h in heads if not 0 <= h < n]
            if bad:
                raise PlanError(f"head plan names head(s) {bad} in layer {layer}",
                                f"that layer has heads 0..{n - 1}", "fix the plan or regenerate it")
        if (self.num_neurons is None) != (self.kept_neurons is None):
            raise PlanError("plan is inconsistent",
                            "it has one of 'num_neurons' and 'kept_neurons' but not both",
                            "regenerate the plan with `cahp-edge prune`")
        if self.num_neurons is not None:
            if not len(self.num_neurons) == len(self.kept_neurons) == len(self.num_heads):
                raise PlanError(
                    "plan is inconsistent",
                    f"{len(self.num_heads)} layers of heads but {len(self.num_neurons)} FFN widths and "
                    f"{len(self.kept_neurons)} layers of kept neurons",
                    "regenerate the plan with `cahp-edge prune`")
            for layer, (n, kept) in enumerate(zip(self.num_neurons, self.kept_neurons, strict=True)):
                if len(set(kept)) != len(kept):
                    raise PlanError(f"plan names an FFN neuron twice in layer {layer}",
                                    f"{len(kept) - len(set(kept))} duplicate(s)",
                                    "list each kept neuron once")
                bad = [i for i in kept if not 0 <= i < n]
                if bad:
                    raise PlanError(f"plan names FFN neuron(s) {bad[:5]} in layer {layer}",
                                    f"that layer has neurons 0..{n - 1}", "fix the plan or regenerate it")

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def keep_all(cls, num_heads: list[int] | tuple[int, ...]) -> HeadPlan:
        return cls(tuple(num_heads), tuple(tuple(range(n)) for n in num_heads))

    @classmethod
    def from_mask(cls, mask: Any, meta: dict[str, Any] | None = None) -> HeadPlan:
        """From a (L, H) 0/1 array-like."""
        rows = [[float(v) for v in row] for row in mask]
        return cls(tuple(len(r) for r in rows),
                   tuple(tuple(i for i, v in enumerate(r) if v > 0.5) for r in rows), dict(meta or {}))

    @classmethod
    def from_dict(cls, d: Any, source: str = "plan") -> HeadPlan:
        if not isinstance(d, dict):
            raise PlanError(f"{source} is not a head plan", "expected a JSON object",
                            "pass a plan written by `cahp-edge prune`")
        for key in ("num_heads", "kept"):
            if key not in d:
                raise PlanError(f"{source} has no '{key}' field", "a head plan needs 'num_heads' and 'kept'",
                                "pass a plan written by `cahp-edge prune`")
        num_heads = _sizes(d, "num_heads", source)
        kept = _index_lists(d, "kept", "head", source)
        fmt = d.get("format", FORMAT)
        if fmt not in FORMATS:
            raise PlanError(f"{source} has format {fmt!r:.40}", f"this cahp-edge reads {', '.join(FORMATS)}",
                            "regenerate the plan with this version's `cahp-edge prune`, or upgrade cahp-edge")
        num_neurons = kept_neurons = None
        if d.get("num_neurons") is not None or d.get("kept_neurons") is not None:
            num_neurons = tuple(_sizes(d, "num_neurons", source))
            kept_neurons = tuple(tuple(sorted(r)) for r in _index_lists(d, "kept_neurons", "neuron", source))
        skip = ("num_heads", "kept", "format", "num_neurons", "kept_neurons", "neurons_per_layer")
        meta = {k: v for k, v in d.items() if k not in skip}
        return cls(tuple(num_heads), tuple(tuple(sorted(r)) for r in kept), meta, num_neurons, kept_neurons)

    @classmethod
    def load(cls, path: str | Path) -> HeadPlan:
        p = Path(path)
        if p.is_dir() and (p / PLAN_FILE).is_file():  # the folder `cahp-edge prune --out` wrote
            p = p / PLAN_FILE
        if not p.is_file():
            raise PlanError(f"plan file not found: {p}", "",
                            "pass the plan.json written by `cahp-edge prune` (or its --out folder)")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PlanError(f"plan file {p} is not valid JSON", str(e),
                            "regenerate it with `cahp-edge prune`") from e
        return cls.from_dict(d, source=f"plan {p.name}")

    # ---- views --------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.num_heads)

    @property
    def heads_per_layer(self) -> list[int]:
        return [len(k) for k in self.kept]

    @property
    def total_kept(self) -> int:
        return sum(self.heads_per_layer)

    @property
    def total_heads(self) -> int:
        return sum(self.num_heads)

    @property
    def prunes_neurons(self) -> bool:
        return self.kept_neurons is not None

    @property
    def neurons_per_layer(self) -> list[int] | None:
        return None if self.kept_neurons is None else [len(k) for k in self.kept_neurons]

    def mask(self) -> list[list[float]]:
        """(L, H) 0/1 mask as nested lists."""
        return [[1.0 if h in set(k) else 0.0 for h in range(n)]
                for n, k in zip(self.num_heads, self.kept, strict=True)]

    def check_model(self, num_heads: list[int], num_neurons: list[int] | None = None) -> None:
        """Refuse a plan made for another model: heads per layer (and FFN widths, for a neuron plan)."""
        if list(num_heads) != list(self.num_heads):
            raise PlanError(
                "head plan does not fit this model",
                f"plan expects heads per layer {list(self.num_heads)}, model has {list(num_heads)}",
                "use a plan made for this model (`cahp-edge prune --model ...`)",
            )
        if self.prunes_neurons and num_neurons is not None and list(num_neurons) != list(self.num_neurons):
            raise PlanError(
                "plan does not fit this model's FFN",
                f"plan expects FFN widths {list(self.num_neurons)}, model has {list(num_neurons)}",
                "use a plan made for this model (`cahp-edge prune --model ...`)",
            )

    def to_dict(self) -> dict[str, Any]:
        d = {"format": FORMAT_NEURONS if self.prunes_neurons else FORMAT, "num_heads": list(self.num_heads),
             "kept": [list(k) for k in self.kept], "heads_per_layer": self.heads_per_layer,
             "total_kept": self.total_kept}
        if self.prunes_neurons:
            d.update({"num_neurons": list(self.num_neurons),
                      "kept_neurons": [list(k) for k in self.kept_neurons],
                      "neurons_per_layer": self.neurons_per_layer})
        meta = {k: v for k, v in self.meta.items() if k not in d}
        return {**d, **meta}

    def save(self, path: str | Path) -> Path:
        from cahp_edge.fsutil import atomic_write_text

        text = json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n"
        return atomic_write_text(Path(path), text)


def _sizes(d: dict, key: str, source: str) -> list[int]:
    """``d[key]`` as a list of positive integers (units per layer), else one PlanError naming the key."""
    v = d.get(key)
    if not (isinstance(v, list) and all(_is_int(n) and n > 0 for n in v)):
        raise PlanError(f"{source}: '{key}' must be a list of positive integers", f"got {v!r:.80}",
                        "fix the plan file")
    return v


def _index_lists(d: dict, key: str, unit: str, source: str) -> list[list[int]]:
    """``d[key]`` as a list of lists of integer indices (kept units per layer), else one PlanError."""
    v = d.get(key)
    if not (isinstance(v, list) and all(isinstance(r, list) and all(map(_is_int, r)) for r in v)):
        raise PlanError(f"{source}: '{key}' must be a list of lists of {unit} indices", f"got {v!r:.80}",
                        "fix the plan file")
    return v


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)
