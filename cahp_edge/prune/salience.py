"""Gradient salience of heads through the soft mask, and masked-model accuracy / loss.

Salience of head h under mask m: E_batches |dL/dm_h| (Michel et al. 2019's importance score), with L
the cross-entropy on the calibration labels and the gradient taken at the *current* mask, so heads
already removed see the mask they live in. Removed heads get salience 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.mask import HeadMask
from cahp_edge.prune.batches import Batches, model_inputs


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def head_salience(
    model: nn.Module,
    adapter: Adapter,
    batches: Batches,
    mask: torch.Tensor | None = None,
    normalize_layers: bool = False,
) -> torch.Tensor:
    """(L, H) salience E|dL/dm_h| at ``mask`` (all ones when None)."""
    dev = _device(model)
    was_training = model.training
    model.eval()
    req = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # only the mask needs a gradient: cheaper backward
    try:
        with HeadMask(model, adapter, values=mask, requires_grad=True) as hm:
            total = torch.zeros_like(hm.values)
            n = 0
            for batch in batches:
                b = {k: v.to(dev) for k, v in batch.items()}
                logits = model(**model_inputs(b)).logits
                loss = F.cross_entropy(logits, b["labels"])
                (g,) = torch.autograd.grad(loss, hm.values)
                total += g.abs() * b["labels"].shape[0]
                n += b["labels"].shape[0]
            sal = (total / max(1, n)).detach()
            if mask is not None:
                sal = sal * (torch.as_tensor(mask, device=sal.device) > 0.5)
    finally:
        for p, r in zip(model.parameters(), req, strict=True):
            p.requires_grad_(r)
        model.train(was_training)
    if normalize_layers:
        # Michel et al.'s code divides each layer's scores by their L2 norm
        sal = sal / sal.norm(dim=-1, keepdim=True).clamp_min(1e-20)
    return sal.cpu()


@torch.no_grad()
def masked_eval(
    model: nn.Module, adapter: Adapter, batches: Batches, mask: torch.Tensor | None = None
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the model with heads silenced by ``mask``."""
    dev = _device(model)
    correct, loss, n = 0, 0.0, 0
    with HeadMask(model, adapter, values=mask):
        for batch in batches:
            b = {k: v.to(dev) for k, v in batch.items()}
            logits = model(**model_inputs(b)).logits
            correct += int((logits.argmax(-1) == b["labels"]).sum())
            loss += float(F.cross_entropy(logits, b["labels"], reduction="sum"))
            n += int(b["labels"].shape[0])
    return correct / max(1, n), loss / max(1, n)


def masked_accuracy(
    model: nn.Module, adapter: Adapter, batches: Batches, mask: torch.Tensor | None = None
) -> float:
    return masked_eval(model, adapter, batches, mask)[0]
