"""Soft masks: per-head multipliers on each head's context vector (HeadMask) and per-neuron multipliers
on the FFN's activated intermediate units (NeuronMask).

Each is applied with a forward pre-hook on the next projection, so it works on transformers 4.57 and 5.x
alike (5.x silently ignores ``head_mask``) and is differentiable: later stages take
``d loss / d mask`` through it for the salience proxy.

    with HeadMask(model, adapter) as hm:
        hm.values.data[2, 5] = 0.0     # silence head 5 of layer 2
        logits = model(**batch).logits
"""

from __future__ import annotations

import torch
from torch import nn

from cahp_edge.arch import Adapter


class _PreHookMask:
    """Attach / detach one forward pre-hook per layer that has units; subclasses say on which module
    (``_module``) and how the input is scaled (``_hook``), and hold ``self.sizes`` (units per layer)."""

    model: nn.Module
    adapter: Adapter
    sizes: list[int]
    _handles: list

    def _module(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError

    def _init_values(self, values, requires_grad: bool, unit: str) -> None:
        """``self.values``: (layers, most units of a layer) multipliers on the model's device, all ones by
        default; given ``values`` of another shape are refused naming both shapes."""
        shape = (len(self.sizes), max(self.sizes) if self.sizes else 0)
        device = next(self.model.parameters()).device
        if values is None:
            values = torch.ones(shape, device=device)
        else:
            values = torch.as_tensor(values, dtype=torch.float32, device=device).clone()
            if tuple(values.shape) != shape:
                raise ValueError(f"mask shape {tuple(values.shape)} != (layers, {unit}) {shape}")
        self.values = values.requires_grad_(requires_grad)
        self._handles: list = []

    def _hook(self, layer_idx: int):
        raise NotImplementedError

    def attach(self):
        self.detach()
        for i, layer in enumerate(self.adapter.layers(self.model)):
            if self.sizes[i]:
                self._handles.append(self._module(layer).register_forward_pre_hook(self._hook(i)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()


class HeadMask(_PreHookMask):
    def __init__(self, model: nn.Module, adapter: Adapter, values: torch.Tensor | None = None,
                 requires_grad: bool = False) -> None:
        self.model, self.adapter = model, adapter
        self.head_size = adapter.head_size(model.config)
        self.heads = self.sizes = adapter.heads_per_layer(model)
        self._init_values(values, requires_grad, "heads")  # values: (L, H)

    def _hook(self, layer_idx: int):
        n, d = self.heads[layer_idx], self.head_size

        def pre_hook(_mod, args):
            (ctx, *rest) = args
            # ctx: (B, T, n*d) -> (B, T, n, d) scaled per head -> (B, T, n*d)
            m = self.values[layer_idx, :n].to(ctx.dtype)
            # unflatten/flatten, not view: some attention paths hand over a non-contiguous context
            scaled = (ctx.unflatten(-1, (n, d)) * m[:, None]).flatten(-2)
            return (scaled, *rest)

        return pre_hook

    def _module(self, layer: nn.Module) -> nn.Module:
        return self.adapter.out_proj(layer)


class NeuronMask(_PreHookMask):
    """Soft FFN-neuron mask: a per-layer, per-neuron multiplier on the activated intermediate units,
    applied with a forward pre-hook on the down projection (differentiable, transformers 4.57 and 5.x).

        with NeuronMask(model, adapter) as nm:
            nm.values.data[1, :512] = 0.0     # silence FFN neurons 0..511 of layer 1
    """

    def __init__(self, model: nn.Module, adapter: Adapter, values: torch.Tensor | None = None,
                 requires_grad: bool = False) -> None:
        self.model, self.adapter = model, adapter
        self.widths = self.sizes = adapter.neurons_per_layer(model)
        self._init_values(values, requires_grad, "neurons")  # values: (L, I)

    def _hook(self, layer_idx: int):
        width = self.widths[layer_idx]

        def pre_hook(_mod, args):
            (act, *rest) = args  # act: (B, T, I) after the activation
            return (act * self.values[layer_idx, :width].to(act.dtype), *rest)

        return pre_hook

    def _module(self, layer: nn.Module) -> nn.Module:
        return self.adapter.ffn_out(layer)
