"""Baselines in the same interface as CAHP: michel, oneshot, magnitude, random, uniform.

- ``michel``: Michel et al. 2019 ("Are Sixteen Heads Really Better than One?"): importance
  E|dL/dm_h| with per-layer L2 normalisation, remove the 10% of all heads that matter least, re-score
  with the mask applied, repeat.
- ``oneshot``: the same importance computed once on the full model; keep the top k.
- ``fisher``: Kwon et al. 2022's diagonal Fisher of each head's mask, computed once; keep the top k
  (with ``--units heads+neurons``, their MAC-budget search over heads and neurons: :mod:`.units`).
- ``magnitude``: Frobenius norm of the head's Q, K, V rows and output-projection columns.
- ``random``: a seeded random subset.
- ``uniform``: the same number of heads in every layer (remainder to the layers with most importance),
  the most important heads of each layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.prune.salience import head_salience
from cahp_edge.prune.sweep import HeadIndex, SelectionData


class _Base:
    name = "base"

    def __init__(self, model: nn.Module, adapter: Adapter, data: SelectionData, seed: int = 0) -> None:
        self.model, self.adapter, self.data, self.seed = model, adapter, data, seed
        self.index = HeadIndex(adapter.heads_per_layer(model))
        self.info: dict = {"timings": {}}
        # progress(task, done, total) of the selector's long steps; select_heads sets it
        self.progress: Callable[[str, int, int], None] = lambda *_: None

    def _time(self, key: str, t0: tuple[float, float]) -> None:
        """Add wall seconds under ``key`` and CPU seconds of this process under ``key_cpu``."""
        t = self.info["timings"]
        t[key] = t.get(key, 0.0) + time.perf_counter() - t0[0]
        ck = key.replace("_s", "_cpu_s")
        t[ck] = t.get(ck, 0.0) + time.process_time() - t0[1]

    def salience(self, mask: torch.Tensor | None = None, normalize: bool = True) -> np.ndarray:
        t0 = (time.perf_counter(), time.process_time())
        s = head_salience(self.model, self.adapter, self.data.calib, mask, normalize_layers=normalize)
        self._time("salience_s", t0)
        return self.index.flat(s).numpy().astype(np.float64)


class _Ranked(_Base):
    """Keep the top-k heads of one fixed score."""

    def score(self) -> np.ndarray:
        raise NotImplementedError

    def masks(self, counts: list[int]) -> dict[int, torch.Tensor]:
        s = self.score()
        self.info["score"] = s.tolist()
        order = _stable_desc(s)
        return {k: self.index.mask_of(order[:k]) for k in counts}


class OneShot(_Ranked):
    name = "oneshot"

    def score(self) -> np.ndarray:
        return self.salience()


class Fisher(_Ranked):
    """Kwon et al. 2022's importance for heads alone: the diagonal empirical Fisher E_x (dL_x/dm_h)^2 of
    each head's mask against the gold labels, scored once, top-k (no per-layer normalisation)."""

    name = "fisher"

    def score(self) -> np.ndarray:
        t0 = (time.perf_counter(), time.process_time())
        s = head_salience(self.model, self.adapter, self.data.calib, kind="fisher")
        self._time("salience_s", t0)
        return self.index.flat(s).numpy().astype(np.float64)


class Magnitude(_Ranked):
    name = "magnitude"

    def score(self) -> np.ndarray:
        hs = self.adapter.head_size(self.model.config)
        out = []
        for layer in self.adapter.layers(self.model):
            q, k, v = self.adapter.qkv(layer)
            o = self.adapter.out_proj(layer).weight.detach()
            n = q.out_features // hs
            for h in range(n):
                sl = slice(h * hs, (h + 1) * hs)
                sq = sum(float(lin.weight.detach()[sl].pow(2).sum()) for lin in (q, k, v))
                out.append(np.sqrt(sq + float(o[:, sl].pow(2).sum())))
        return np.array(out)


class Random(_Ranked):
    name = "random"

    def score(self) -> np.ndarray:
        return np.random.default_rng(self.seed).permutation(self.index.n).astype(np.float64)


class Uniform(_Base):
    name = "uniform"

    def masks(self, counts: list[int]) -> dict[int, torch.Tensor]:
        s = self.salience()
        self.info["score"] = s.tolist()
        layer = self.index.layer_of()
        n_layers = len(self.index.heads_per_layer)
        layer_total = np.array([s[layer == i].sum() for i in range(n_layers)])
        out = {}
        for k in counts:
            per = np.full(n_layers, k // n_layers)
            for i in _stable_desc(layer_total)[: k % n_layers]:
                per[i] += 1
            kept = []
            for i in range(n_layers):
                ids = np.nonzero(layer == i)[0]
                take = min(int(per[i]), len(ids))
                kept += list(ids[_stable_desc(s[ids])[:take]])
            # layers smaller than their share: give the leftover slots to the best remaining heads
            rest = [h for h in _stable_desc(s) if h not in set(kept)]
            kept += rest[: k - len(kept)]
            out[k] = self.index.mask_of(kept)
        return out


class Michel(_Base):
    name = "michel"
    step_fraction = 0.1  # of all heads per round, as in Michel et al.'s code

    def masks(self, counts: list[int]) -> dict[int, torch.Tensor]:
        n = self.index.n
        step = max(1, int(n * self.step_fraction))
        kept = np.ones(n, dtype=bool)
        out, rounds = {}, 0
        for target in sorted(counts, reverse=True):
            while kept.sum() > target:
                s = self.salience(self.index.unflat(kept.astype(np.float64)))
                self.info.setdefault("salience", s.tolist())  # first round: the full model's
                s[~kept] = np.inf
                drop = min(step, int(kept.sum()) - target)
                kept[_stable_asc(s)[:drop]] = False
                rounds += 1
            out[target] = self.index.mask_of(np.nonzero(kept)[0])
        self.info["rounds"] = rounds
        return out


def _stable_desc(s: np.ndarray) -> np.ndarray:
    return np.argsort(-np.asarray(s), kind="stable")


def _stable_asc(s: np.ndarray) -> np.ndarray:
    return np.argsort(np.asarray(s), kind="stable")


BASELINES = {c.name: c for c in (Michel, OneShot, Magnitude, Random, Uniform)}
