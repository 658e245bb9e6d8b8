"""Gradient salience of heads through the soft mask, and masked-model accuracy / loss.

Salience of head h under mask m: E_batches |dL/dm_h| (Michel et al. 2019's importance score), with L
the cross-entropy on the calibration labels (or on given per-batch targets, e.g. the dense model's own
predictions) and the gradient taken at the *current* mask, so heads already removed see the mask they
live in. Removed heads get salience 0. ``kind="fisher"``: E_x (dL_x/dm_h)^2 instead (Kwon et al. 2022).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.model.mask import HeadMask
from cahp_edge.model.task_ops import ops_for
from cahp_edge.prune.batches import Batches, model_inputs


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


SALIENCE_KINDS = ("abs", "fisher")
LABEL_SOURCES = ("gold", "predicted")  # what L is measured against


class _ExampleMask(HeadMask):
    """HeadMask with an extra (B, L, H) per-example factor of ones: the gradient of the summed loss
    with respect to it is every example's own dL_b/dm_h, in one backward pass."""

    example: torch.Tensor | None = None

    def _hook(self, layer_idx: int):
        n, d = self.heads[layer_idx], self.head_size

        def pre_hook(_mod, args):
            (ctx, *rest) = args
            m = self.values[layer_idx, :n] * self.example[:, layer_idx, :n]  # (B, n)
            scaled = (ctx.unflatten(-1, (n, d)) * m[:, None, :, None].to(ctx.dtype)).flatten(-2)
            return (scaled, *rest)

        return pre_hook


@contextlib.contextmanager
def masks_only(model: nn.Module) -> Iterator[None]:
    """Eval mode with every parameter frozen (only mask gradients are taken: a cheaper backward), both
    restored on the way out."""
    was_training = model.training
    model.eval()
    req = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, r in zip(model.parameters(), req, strict=True):
            p.requires_grad_(r)
        model.train(was_training)


def head_salience(
    model: nn.Module,
    adapter: Adapter,
    batches: Batches,
    mask: torch.Tensor | None = None,
    normalize_layers: bool = False,
    kind: str = "abs",
    targets: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """(L, H) salience at ``mask`` (all ones when None).

    ``kind="abs"``: E_batches |dL/dm_h| (Michel et al.; L = a batch's mean loss).
    ``kind="fisher"``: E_examples (dL_x/dm_h)^2, the diagonal empirical Fisher of the mask (Kwon et al.
    2022): to second order, the loss increase from removing head h at a trained optimum.
    ``targets``: one label tensor per batch replacing the gold labels (e.g. :func:`dense_predictions`).
    """
    if kind not in SALIENCE_KINDS:
        raise ValueError(f"unknown salience kind {kind!r}")
    dev = _device(model)
    ops = ops_for(model)
    cls = _ExampleMask if kind == "fisher" else HeadMask
    with masks_only(model), cls(model, adapter, values=mask, requires_grad=kind == "abs") as hm:
        total = torch.zeros_like(hm.values, requires_grad=False)
        n = 0
        for i, batch in enumerate(batches):
            b = {k: v.to(dev) for k, v in batch.items()}
            y = b["labels"] if targets is None else targets[i].to(dev)
            bs = int(y.shape[0])
            if kind == "fisher":
                hm.example = torch.ones(bs, *hm.values.shape, device=dev, requires_grad=True)
                loss = ops.loss(model(**model_inputs(b)).logits, y)
                (g,) = torch.autograd.grad(loss, hm.example)  # (B, L, H): per-example gradients
                total += g.pow(2).sum(0)
            else:
                loss = ops.loss(model(**model_inputs(b)).logits, y) / bs  # the batch's mean loss
                (g,) = torch.autograd.grad(loss, hm.values)
                total += g.abs() * bs
            n += bs
        sal = (total / max(1, n)).detach()
        if mask is not None:
            sal = sal * (torch.as_tensor(mask, device=sal.device) > 0.5)
    if normalize_layers:
        # Michel et al.'s code divides each layer's scores by their L2 norm
        sal = sal / sal.norm(dim=-1, keepdim=True).clamp_min(1e-20)
    return sal.cpu()


@torch.no_grad()
def dense_predictions(model: nn.Module, batches: Batches) -> list[torch.Tensor]:
    """The unmasked model's own target per batch (argmax label, or the embedding: model.task_ops)."""
    dev = _device(model)
    target = ops_for(model).target
    return [target(model(**model_inputs({k: v.to(dev) for k, v in b.items()})).logits).cpu() for b in batches]


def with_dense_targets(model: nn.Module, batches: Batches) -> Batches:
    """``batches`` with each ``labels`` replaced by the dense model's own target (its argmax label, or its
    (B, D) embedding: cahp_edge.model.task_ops): what label-free selection scores agreement against."""
    targets = dense_predictions(model, batches)
    # taggers: only each word's first sub-token is scored (the rest are ignored, like gold tags)
    targets = [t.masked_fill(~b["first"].cpu(), -100) if "first" in b else t
               for b, t in zip(batches, targets, strict=True)]
    return Batches([{**b, "labels": t} for b, t in zip(batches, targets, strict=True)])


@torch.no_grad()
def masked_outcomes(
    model: nn.Module, adapter: Adapter, batches: Batches, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, float]:
    """((N,) score per example in ``batches`` order, mean loss) with ``mask`` applied. The score is 1/0
    (correct or not) for classifiers, the cosine to the target for embeddings (model.task_ops)."""
    dev = _device(model)
    ops = ops_for(model)
    correct, loss, n = [], 0.0, 0
    with HeadMask(model, adapter, values=mask):
        for batch in batches:
            b = {k: v.to(dev) for k, v in batch.items()}
            logits = model(**model_inputs(b)).logits
            correct.append(ops.score(logits, b["labels"]).cpu())
            loss += float(ops.loss(logits, b["labels"]))
            n += int(b["labels"].shape[0])
    return (torch.cat(correct) if correct else torch.zeros(0)), loss / max(1, n)


def masked_eval(
    model: nn.Module, adapter: Adapter, batches: Batches, mask: torch.Tensor | None = None
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the model with heads silenced by ``mask``."""
    correct, loss = masked_outcomes(model, adapter, batches, mask)
    return accuracy_of(correct), loss


def accuracy_of(correct: torch.Tensor) -> float:
    """Mean of an (N,) per-example score: the exact fraction correct for 1/0 scores (0.0 when empty)."""
    if correct.dtype == torch.bool or bool(((correct == 0) | (correct == 1)).all()):
        return int(correct.sum()) / max(1, len(correct))
    return float(correct.double().sum()) / max(1, len(correct))


def masked_accuracy(
    model: nn.Module, adapter: Adapter, batches: Batches, mask: torch.Tensor | None = None
) -> float:
    return masked_eval(model, adapter, batches, mask)[0]
