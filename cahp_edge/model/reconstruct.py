"""Retraining-free recovery: layer-wise least-squares re-fit of each sublayer's output projection.

    report = reconstruct(pruned, dense, adapter, batches)      # in place, seconds on CPU

For layer l = 0..L-1 and its two sublayers (attention, FFN) in order, on calibration tokens (padding
excluded): the pruned model's sublayer output y = W x + b enters a LayerNorm as y + r (r the residual).
The dense model's LayerNorm input there is z*. The kept units' projection is re-fit so the pruned model
reproduces it:  min_{W, b} sum_tokens ||W x + b - (z* - r)||^2 + lam ||W||^2,  solved from the normal
equations (x with a ones column; ``lam`` = ``damp`` x the mean diagonal of X^T X, unbiased for b).
Inputs x and residuals r come from the pruned model with layers < l already re-fit, so each layer also
corrects what earlier layers lost (Kwon et al. 2022's layer-wise reconstruction, with the whole output
projection free instead of one scale per unit). A zero-unit sublayer re-fits its bias only. A re-fit that
would not lower the calibration error keeps the old weights.

One dense pass records every z*; the pruned model then runs once per sublayer, stopped at that sublayer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.arch.base import ZeroHeadAttention, get_module

DEFAULT_DAMP = 0.01


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the sublayer of interest has run."""


@dataclass
class SublayerFit:
    layer: int
    sublayer: str  # "attention" | "ffn"
    units: int  # inputs of the re-fit projection (heads x head size, or neurons)
    error_before: float  # mean squared error per token and feature vs the dense LayerNorm input
    error_after: float
    kept_old: bool = False


@dataclass
class ReconstructReport:
    positions: int  # token positions fitted on, padding excluded (a key named "tokens" is redacted)
    damp: float
    seconds: float
    fits: list[SublayerFit] = field(default_factory=list)

    @property
    def error_ratio(self) -> float:
        """Summed calibration error after / before over all sublayers (how much of the gap was closed)."""
        before = sum(f.error_before for f in self.fits)
        return round(sum(f.error_after for f in self.fits) / before, 4) if before > 0 else 1.0

    def to_dict(self) -> dict:
        return asdict(self) | {"error_ratio": self.error_ratio}


def _inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _sublayers(adapter: Adapter, layer: nn.Module):
    """((name, projection or ZeroHeadAttention, LayerNorm), ...) of one layer, in forward order."""
    attn = adapter.attention(layer)
    proj = attn if isinstance(attn, ZeroHeadAttention) else adapter.out_proj(layer)
    return (("attention", proj, get_module(layer, adapter.attn_norm_path)),
            ("ffn", adapter.ffn_out(layer), get_module(layer, adapter.ffn_norm_path)))


@torch.no_grad()
def _dense_targets(dense: nn.Module, adapter: Adapter, batches: list[dict]) -> list[list[torch.Tensor]]:
    """Per batch, per sublayer (2L): the dense LayerNorm input at real tokens, (tokens, D)."""
    out: list[list[torch.Tensor]] = []
    cur: list[torch.Tensor] = []
    mask: dict = {}
    norms = [n for layer in adapter.layers(dense) for _, _, n in _sublayers(adapter, layer)]
    hs = [n.register_forward_pre_hook(lambda _m, a: cur.append(a[0][mask["m"]].float())) for n in norms]
    try:
        for b in batches:
            mask["m"], cur = b["attention_mask"].bool(), []
            dense(**_inputs(b))
            out.append(cur)
    finally:
        for h in hs:
            h.remove()
    return out


@torch.no_grad()
def _collect(model, proj, norm, batches, targets, idx: int):
    """Normal equations of one sublayer: (G, R, err_old_sum, tokens) with x augmented by a ones column."""
    seen: dict = {}

    def at_proj(_m, args):
        seen["x"] = args[0]

    def at_proj_out(_m, _args, out):
        seen["y"] = out[0] if isinstance(out, tuple) else out

    def at_norm(_m, args):
        seen["z"] = args[0]
        raise _Stop

    handles = [proj.register_forward_pre_hook(at_proj), proj.register_forward_hook(at_proj_out),
               norm.register_forward_pre_hook(at_norm)]
    G = R = None
    err, n = 0.0, 0
    try:
        for b, tgt in zip(batches, targets, strict=True):
            m = b["attention_mask"].bool()
            with contextlib.suppress(_Stop):
                model(**_inputs(b))
            y, z = seen["y"].expand_as(seen["z"])[m].double(), seen["z"][m].double()  # (N, D)
            x = seen["x"][m].double() if not isinstance(proj, ZeroHeadAttention) else z[:, :0]  # (N, k)
            t = tgt[idx].double() - (z - y)  # what the projection should output: z* - residual
            xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)  # (N, k + 1)
            G = xa.T @ xa if G is None else G + xa.T @ xa
            R = xa.T @ t if R is None else R + xa.T @ t
            err += float((y - t).pow(2).sum())
            n += len(x)
    finally:
        for h in handles:
            h.remove()
    return G, R, err, n


def _solve(G: torch.Tensor, R: torch.Tensor, damp: float) -> torch.Tensor:
    k = G.shape[0] - 1
    reg = torch.zeros_like(G)
    if k:
        lam = damp * float(G.diagonal()[:k].mean())
        idx = torch.arange(k, device=G.device)
        reg[idx, idx] = max(lam, 1e-12)
    return torch.linalg.solve(G + reg, R)  # (k + 1, D): rows = W^T, last row = b


def _error(G: torch.Tensor, R: torch.Tensor, tt: float, W: torch.Tensor) -> float:
    """sum ||xa W - t||^2 from the normal equations: W^T G W - 2 W^T R + t^T t (trace)."""
    return float((W * (G @ W)).sum() - 2 * (W * R).sum() + tt)


def reconstruct(pruned: nn.Module, dense: nn.Module, adapter: Adapter, batches: Iterable[dict],
                damp: float = DEFAULT_DAMP, progress: Callable[[int, int], None] | None = None
                ) -> ReconstructReport:
    """Re-fit every sublayer's output projection of ``pruned`` (in place) to the dense model's layer
    outputs on ``batches`` (dicts of tensors with ``attention_mask``); see the module doc."""
    t0 = time.perf_counter()
    dev = next(pruned.parameters()).device  # GPU when the models are there; dense must be on it too
    batches = [{k: v.to(dev) for k, v in b.items()} for b in batches]
    was = pruned.training, dense.training
    pruned.eval()
    dense.eval()
    targets = _dense_targets(dense, adapter, batches)
    layers = adapter.layers(pruned)
    fits: list[SublayerFit] = []
    total = 2 * len(layers)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    try:
        for li, layer in enumerate(layers):
            for si, (name, proj, norm) in enumerate(_sublayers(adapter, layer)):
                if progress:
                    progress(2 * li + si, total)
                G, R, err_old, n = _collect(pruned, proj, norm, batches, targets, 2 * li + si)
                tt = err_old - _error(G, R, 0.0, _current(proj))  # t^T t, recovered from the old error
                W = _solve(G, R, damp)
                err_new = _error(G, R, tt, W)
                keep_old = err_new > err_old
                if not keep_old:
                    _assign(proj, W)
                fits.append(SublayerFit(li, name, G.shape[0] - 1, err_old / max(1, n) / R.shape[1],
                                        min(err_new, err_old) / max(1, n) / R.shape[1], keep_old))
        if progress:
            progress(total, total)
    finally:
        pruned.train(was[0])
        dense.train(was[1])
    return ReconstructReport(tokens, damp, time.perf_counter() - t0, fits)


def _current(proj) -> torch.Tensor:
    """The projection's (k + 1, D) augmented weights [W^T; b] as float64."""
    if isinstance(proj, ZeroHeadAttention):
        return proj.bias.detach().double()[None, :]
    b = proj.bias.detach() if proj.bias is not None else torch.zeros(proj.out_features,
                                                                       device=proj.weight.device)
    return torch.cat([proj.weight.detach().T, b[None, :]]).double()


@torch.no_grad()
def _assign(proj, W: torch.Tensor) -> None:
    if isinstance(proj, ZeroHeadAttention):
        proj.bias.copy_(W[-1].to(proj.bias.dtype))
        return
    proj.weight.copy_(W[:-1].T.to(proj.weight.dtype))
    proj.bias.copy_(W[-1].to(proj.bias.dtype))
