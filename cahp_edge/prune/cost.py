"""What a kept head and a kept FFN neuron cost (torch-free: the build and the targets' cost model use it).

    cost = mac_cost(adapter, config, seq_len=25.3)     # MAC-proportional, labelled as such
    cost.of([12] * 6, [1536] * 6)                      # the dense model, in cost.unit
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the adapter module imports torch; this one stays torch-free
    from cahp_edge.arch import Adapter


@dataclass(frozen=True)
class UnitCost:
    """Cost of each kept unit plus what no plan removes, in ``unit`` (MACs or ms)."""

    per_head: float
    per_neuron: float
    fixed: float  # embeddings, layer norms, pooler and classifier: paid whatever the plan
    unit: str
    source: str  # how it was obtained, shown with every number derived from it
    measured: list = field(default_factory=list)  # the timings a measured model was fitted to

    def of(self, heads_per_layer, neurons_per_layer) -> float:
        return self.fixed + self.per_head * sum(heads_per_layer) + self.per_neuron * sum(neurons_per_layer)

    def to_dict(self) -> dict:
        return asdict(self)


def mac_cost(adapter: Adapter, config, seq_len: float) -> UnitCost:
    """MACs of one sequence of ``seq_len`` tokens (batch 1), per head and per FFN neuron (the formulas of
    :mod:`cahp_edge.model.accounting`); fixed = pooler + classifier (embeddings are lookups)."""
    T, D, d = float(seq_len), adapter.hidden_size(config), adapter.head_size(config)
    labels = int(getattr(config, "num_labels", 2))
    return UnitCost(per_head=4 * T * D * d + 2 * T * T * d, per_neuron=2 * T * D, fixed=D * D + D * labels,
                    unit="MACs", source=f"MAC-proportional (not measured), seq {T:.1f}")
