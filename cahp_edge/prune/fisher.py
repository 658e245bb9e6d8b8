"""Diagonal empirical Fisher of the head and FFN-neuron masks, in one pass (Kwon et al. 2022).

    heads, neurons = unit_fisher(model, adapter, batches, targets)   # (L, H), (L, I)

I_u = E_x (dL_x/dm_u)^2 for every head and neuron mask m_u at all-ones: to second order, the loss
increase from removing unit u of a trained model. Per-example gradients come from one backward pass per
batch: each mask is multiplied by a (B, L, units) factor of ones whose gradient of the *summed* loss is
every example's own dL_x/dm_u. (Kwon et al.'s public code squares per-batch gradients instead; per
example is the Fisher's definition and costs the same pass.)
"""

from __future__ import annotations

import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.model.mask import NeuronMask
from cahp_edge.model.task_ops import ops_for
from cahp_edge.prune.batches import Batches, model_inputs
from cahp_edge.prune.salience import _ExampleMask, masks_only


class _ExampleNeuronMask(NeuronMask):
    """NeuronMask times a (B, L, I) per-example factor (see the module doc)."""

    example: torch.Tensor | None = None

    def _hook(self, layer_idx: int):
        width = self.widths[layer_idx]

        def pre_hook(_mod, args):
            (act, *rest) = args  # (B, T, I)
            m = self.values[layer_idx, :width] * self.example[:, layer_idx, :width]  # (B, I)
            return (act * m[:, None, :].to(act.dtype), *rest)

        return pre_hook


def unit_fisher(model: nn.Module, adapter: Adapter, batches: Batches,
                targets: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """((L, H) head Fisher, (L, I) neuron Fisher) of the dense model on ``batches``; loss against the
    gold labels, or ``targets`` (one label tensor per batch, e.g. the dense model's own predictions)."""
    dev = next(model.parameters()).device
    ops = ops_for(model)
    with masks_only(model), _ExampleMask(model, adapter) as hm, _ExampleNeuronMask(model, adapter) as nm:
        h_tot = torch.zeros_like(hm.values)
        n_tot = torch.zeros_like(nm.values)
        n = 0
        for i, batch in enumerate(batches):
            b = {k: v.to(dev) for k, v in batch.items()}
            y = b["labels"] if targets is None else targets[i].to(dev)
            bs = int(y.shape[0])
            hm.example = torch.ones(bs, *hm.values.shape, device=dev, requires_grad=True)
            nm.example = torch.ones(bs, *nm.values.shape, device=dev, requires_grad=True)
            loss = ops.loss(model(**model_inputs(b)).logits, y)
            gh, gn = torch.autograd.grad(loss, (hm.example, nm.example))  # (B, L, H), (B, L, I)
            h_tot += gh.pow(2).sum(0)
            n_tot += gn.pow(2).sum(0)
            n += bs
    return (h_tot / max(1, n)).cpu(), (n_tot / max(1, n)).cpu()
