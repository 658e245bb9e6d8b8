"""Parameters and multiply-accumulates (MACs) per layer, for dense and pruned models.

MACs are for one sequence of length T (batch 1). Per layer with k heads of size d, hidden D and
FFN width I:  QKV 3*T*D*k*d  +  scores T*T*k*d  +  context T*T*k*d  +  out-proj T*k*d*D  +  FFN 2*T*D*I.
Removing one head saves 4*D*d + 3*d parameters (Q/K/V rows + biases, output-projection columns).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cahp_edge.arch import Adapter, get_adapter


@dataclass(frozen=True)
class LayerCost:
    layer: int
    heads: int
    params: int
    attn_macs: int
    ffn_macs: int

    @property
    def macs(self) -> int:
        return self.attn_macs + self.ffn_macs


@dataclass(frozen=True)
class ModelCost:
    seq_len: int
    layers: tuple[LayerCost, ...]
    total_params: int
    other_macs: int  # pooler + classifier (embeddings are lookups)

    @property
    def heads(self) -> int:
        return sum(c.heads for c in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(c.macs for c in self.layers) + self.other_macs

    @property
    def attn_macs(self) -> int:
        return sum(c.attn_macs for c in self.layers)

    def to_dict(self) -> dict:
        return {"seq_len": self.seq_len, "heads": self.heads, "total_params": self.total_params,
                "total_macs": self.total_macs, "attn_macs": self.attn_macs,
                "layers": [asdict(c) | {"macs": c.macs} for c in self.layers]}


def head_params(hidden: int, head_size: int) -> int:
    """Parameters one head owns: Q/K/V rows (+bias) and its output-projection columns."""
    return 4 * hidden * head_size + 3 * head_size


def model_cost(model, seq_len: int = 128, adapter: Adapter | None = None) -> ModelCost:
    adapter = adapter or get_adapter(model.config)
    cfg = model.config
    D, d = adapter.hidden_size(cfg), adapter.head_size(cfg)
    T = seq_len
    layers = []
    for i, layer in enumerate(adapter.layers(model)):
        k = adapter.heads_in_layer(layer, d)
        params = sum(p.numel() for p in layer.parameters())
        attn = 3 * T * D * k * d + 2 * T * T * k * d + T * k * d * D
        attn_mods = {id(m) for m in (*adapter.qkv(layer), adapter.out_proj(layer))} if k else set()
        ffn = sum(m.in_features * m.out_features for m in _linears(layer) if id(m) not in attn_mods) * T
        layers.append(LayerCost(i, k, params, attn, ffn))
    head_ids = {id(p) for layer in adapter.layers(model) for p in layer.parameters()}
    total = sum(p.numel() for p in model.parameters())
    other = sum(m.in_features * m.out_features for m in _linears(model)
                if not any(id(p) in head_ids for p in m.parameters()))
    return ModelCost(T, tuple(layers), total, other)


def ideal_speedup(dense: ModelCost, pruned: ModelCost) -> float:
    return dense.total_macs / max(1, pruned.total_macs)


def _linears(module):
    from torch import nn

    return [m for m in module.modules() if isinstance(m, nn.Linear)]
