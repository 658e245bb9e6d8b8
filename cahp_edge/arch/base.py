"""What an architecture adapter knows: where Q/K/V/O live, head-count attributes, how to drop heads.

Adding a family is one short subclass registered with :func:`cahp_edge.arch.register`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn


class ZeroHeadAttention(nn.Module):
    """Stands in for a self-attention block that keeps no heads.

    With zero heads the context vector is empty, so the output projection yields only its bias:
    the block's contribution is ``bias`` broadcast over (B, T, hidden). A 0-width Linear would run in
    PyTorch but breaks ONNX export and transformers 4.57's forward, so the bias lives here instead.

    With ``output_attentions=True`` such a layer has no attention map: transformers 4.57 puts ``None``
    in its slot, 5.x leaves the layer out of ``outputs.attentions`` (it records only its own attention
    classes). Align maps to layers with ``adapter.heads_per_layer(model)`` rather than by position.
    """

    def __init__(self, bias: torch.Tensor) -> None:
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, *args, **kwargs):  # mirrors whatever the family passes
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("query"))
        # x: (B, T, hidden) -> (B, T, hidden) filled with the output bias
        return self.bias.expand(x.shape).to(x.dtype), None


def get_module(root: nn.Module, path: str) -> nn.Module:
    mod = root
    for part in path.split("."):
        mod = getattr(mod, part)
    return mod


def set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = get_module(root, parent_path) if parent_path else root
    setattr(parent, name, new)


@dataclass(frozen=True)
class Adapter:
    """Architecture facts for one encoder family (sequence classification)."""

    name: str
    model_types: tuple[str, ...]
    heads_attr: str = "num_attention_heads"  # config attribute holding heads per layer
    hidden_attr: str = "hidden_size"
    layers_attr: str = "num_hidden_layers"
    ffn_attr: str = "intermediate_size"  # config attribute holding the FFN width of the source model
    layers_path: str = "encoder.layer"  # relative to model.base_model
    attn_path: str = "attention.self"  # module holding q, k, v (relative to a layer)
    q: str = "query"
    k: str = "key"
    v: str = "value"
    o_path: str = "attention.output.dense"  # output projection (relative to a layer)
    # attributes on the attention module that must follow the head count; value = heads * this
    # ("heads" means the plain count, an int means count * head_size)
    count_attrs: tuple[tuple[str, str], ...] = (("num_attention_heads", "heads"), ("all_head_size", "width"))
    # FFN: the up projection (its output features are the prunable neurons) and the down projection
    ffn_in_path: str = "intermediate.dense"
    ffn_out_path: str = "output.dense"
    # the LayerNorm each sublayer's output (plus its residual) enters: what reconstruction matches
    attn_norm_path: str = "attention.output.LayerNorm"
    ffn_norm_path: str = "output.LayerNorm"
    export_inputs: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
    ort_model_type: str = "bert"
    onnx_atol: float = 1e-4  # fp32 ORT vs torch logits

    # ---- config facts --------------------------------------------------------------------------
    def num_layers(self, config) -> int:
        return int(getattr(config, self.layers_attr))

    def num_heads(self, config) -> int:
        return int(getattr(config, self.heads_attr))

    def hidden_size(self, config) -> int:
        return int(getattr(config, self.hidden_attr))

    def ffn_width(self, config) -> int:
        return int(getattr(config, self.ffn_attr))

    def head_size(self, config) -> int:
        return self.hidden_size(config) // self.num_heads(config)

    # ---- module access -------------------------------------------------------------------------
    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(get_module(model.base_model, self.layers_path))

    def attention(self, layer: nn.Module) -> nn.Module:
        return get_module(layer, self.attn_path)

    def out_proj(self, layer: nn.Module) -> nn.Module:
        return get_module(layer, self.o_path)

    def qkv(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        attn = self.attention(layer)
        return getattr(attn, self.q), getattr(attn, self.k), getattr(attn, self.v)

    def ffn_in(self, layer: nn.Module) -> nn.Linear:
        return get_module(layer, self.ffn_in_path)

    def ffn_out(self, layer: nn.Module) -> nn.Linear:
        return get_module(layer, self.ffn_out_path)

    def neurons_per_layer(self, model: nn.Module) -> list[int]:
        """FFN intermediate width of every layer (the neurons a plan can keep or drop)."""
        return [self.ffn_in(layer).out_features for layer in self.layers(model)]

    def heads_in_layer(self, layer: nn.Module, head_size: int) -> int:
        attn = self.attention(layer)
        if isinstance(attn, ZeroHeadAttention):
            return 0
        return getattr(attn, self.q).out_features // head_size

    def heads_per_layer(self, model: nn.Module) -> list[int]:
        hs = self.head_size(model.config)
        return [self.heads_in_layer(layer, hs) for layer in self.layers(model)]

    # ---- surgery -------------------------------------------------------------------------------
    def keep_heads(self, layer: nn.Module, keep: list[int], head_size: int) -> None:
        """Physically keep only heads ``keep`` (indices into the layer's *current* heads)."""
        if not keep:
            self._drop_all(layer)
            return
        idx = torch.cat([torch.arange(h * head_size, (h + 1) * head_size) for h in keep])
        attn = self.attention(layer)
        for name in (self.q, self.k, self.v):
            setattr(attn, name, _slice_linear(getattr(attn, name), idx, dim=0))
        set_module(layer, self.o_path, _slice_linear(self.out_proj(layer), idx, dim=1))
        for attr, kind in self.count_attrs:
            setattr(attn, attr, len(keep) if kind == "heads" else len(keep) * head_size)

    def keep_neurons(self, layer: nn.Module, keep: list[int]) -> None:
        """Physically keep only FFN neurons ``keep`` (indices into the layer's current intermediate units):
        rows of the up projection, columns of the down projection. An empty ``keep`` leaves a zero-width
        FFN whose output is the down projection's bias, exactly what masking every neuron gives."""
        idx = torch.as_tensor(sorted(keep), dtype=torch.long)
        set_module(layer, self.ffn_in_path, _slice_linear(self.ffn_in(layer), idx, dim=0))
        set_module(layer, self.ffn_out_path, _slice_linear(self.ffn_out(layer), idx, dim=1))

    def _drop_all(self, layer: nn.Module) -> None:
        bias = self.out_proj(layer).bias
        if bias is None:  # pragma: no cover - every supported family has an output bias
            bias = torch.zeros(self.out_proj(layer).out_features)
        o_inside_attn = self.o_path.startswith(self.attn_path + ".")
        if not o_inside_attn:
            set_module(layer, self.o_path, nn.Identity())
        set_module(layer, self.attn_path, ZeroHeadAttention(bias))


def _slice_linear(lin: nn.Linear, idx: torch.Tensor, dim: int) -> nn.Linear:
    """New Linear keeping rows (dim=0, output features) or columns (dim=1, input features) ``idx``."""
    w = lin.weight.detach().index_select(dim, idx).clone()
    out_f, in_f = w.shape
    with warnings.catch_warnings():  # a zero-neuron layer's Linear has no elements to initialise
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        # skip_init: the values are copied below
        new = torch.nn.utils.skip_init(nn.Linear, in_f, out_f, bias=lin.bias is not None, device=w.device,
                                       dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if lin.bias is not None:
            new.bias.copy_(lin.bias.detach()[idx] if dim == 0 else lin.bias.detach())
    new.train(lin.training)
    return new
