"""CAHP: Complementary Attention Head Pruning (head selection as a global graph problem).

1. Signatures: every head's attention distributions over real tokens of the calibration split,
   reduced to the (N, N) mean-JSD head graph across *all* layers (:mod:`.signatures`, :mod:`.distance`).
2. Clustering of that graph into k groups of behaviourally similar heads (:mod:`.graph`); per group
   keep the most salient head (salience: E|dL/dm_h| through the soft mask, :mod:`.salience`, with L
   measured against the dense model's own labels by default). Kept heads can come from any layer: the
   layer budget is not fixed in advance.
3. ``schedule="iterative"`` (default): walk k down from all heads in rounds of ``step_fraction`` of
   the heads; each round re-computes salience with the current mask applied and re-clusters only the
   heads still kept, so a head is dropped only when a behaviourally close, more salient head stays
   to stand in for it. Rounds after the first may use a rotating share of the calibration batches
   (``round_fraction``; 0.5 in :class:`~cahp_edge.prune.PruneOptions`). ``schedule="oneshot"``
   clusters all heads once per k with full-model salience (the plain reading of the method; kept for
   comparison).
4. The k sweep and the knee (:mod:`.sweep`, :mod:`.knee`) pick k when no budget is given.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from cahp_edge.arch import Adapter
from cahp_edge.prune import graph
from cahp_edge.prune.baselines import _Base, _stable_desc
from cahp_edge.prune.batches import Batches
from cahp_edge.prune.distance import metric, summary
from cahp_edge.prune.options import CahpOptions
from cahp_edge.prune.salience import LABEL_SOURCES, SALIENCE_KINDS, dense_predictions, head_salience
from cahp_edge.prune.signatures import HeadSignatures, collect
from cahp_edge.prune.sweep import SelectionData

_DEFAULTS = CahpOptions()  # one source for the defaults: the CLI and build.toml use the same model


class CAHP(_Base):
    name = "cahp"

    def __init__(
        self,
        model: nn.Module,
        adapter: Adapter,
        data: SelectionData,
        seed: int = 0,
        clustering: str = _DEFAULTS.clustering,
        schedule: str = _DEFAULTS.schedule,
        step_fraction: float = 0.1,
        sqrt_jsd: bool = True,
        normalize_salience: bool = True,
        salience_weight: float = _DEFAULTS.salience_weight,
        signatures: HeadSignatures | None = None,
        salience_kind: str = _DEFAULTS.salience_kind,
        salience_labels: str = _DEFAULTS.salience_labels,
        round_fraction: float = _DEFAULTS.round_fraction,
        loss_below: float = _DEFAULTS.loss_below,
        loss_examples: int = 128,
        coverage_from: float = _DEFAULTS.coverage_from,
        coverage_full: float = _DEFAULTS.coverage_full,
    ) -> None:
        super().__init__(model, adapter, data, seed)
        if clustering not in graph.CLUSTERINGS:
            raise ValueError(f"unknown clustering {clustering!r}")
        if schedule not in ("iterative", "oneshot"):
            raise ValueError(f"unknown schedule {schedule!r}")
        self.clustering, self.schedule, self.step_fraction = clustering, schedule, step_fraction
        self.sqrt_jsd, self.normalize_salience = sqrt_jsd, normalize_salience
        self.salience_weight = salience_weight
        self.sig = signatures
        if salience_kind not in SALIENCE_KINDS:
            raise ValueError(f"unknown salience kind {salience_kind!r}")
        if salience_labels not in LABEL_SOURCES:
            raise ValueError(f"unknown salience labels {salience_labels!r}")
        if not 0.0 < round_fraction <= 1.0:
            raise ValueError(f"round_fraction must be in (0, 1], got {round_fraction}")
        self.salience_kind, self.salience_labels = salience_kind, salience_labels
        self.round_fraction = round_fraction
        self._targets: list[torch.Tensor] | None = None
        # representative chosen by measured calibration loss once at most loss_below * N heads remain
        self.loss_below, self.loss_examples = loss_below, loss_examples
        self._loss_batches: Batches | None = None
        if not 0.0 <= coverage_full <= coverage_from <= 1.0:
            raise ValueError(
                f"need 0 <= coverage_full <= coverage_from <= 1, got {coverage_full}, {coverage_from}")
        self.coverage_from, self.coverage_full = coverage_from, coverage_full
        self.info.update(
            {
                "clustering": clustering,
                "schedule": schedule,
                "step_fraction": step_fraction,
                "salience_weight": salience_weight,
                "distance": "sqrt(mean JSD)" if sqrt_jsd else "mean JSD",
                "salience_normalized_per_layer": normalize_salience,
                "salience_kind": salience_kind,
                "salience_labels": salience_labels,
                "round_fraction": round_fraction,
                "loss_below": loss_below,
                "loss_examples": loss_examples,
                "coverage_from": coverage_from,
                "coverage_full": coverage_full,
            }
        )

    # ---- stages ------------------------------------------------------------------------------------
    def signatures(self) -> HeadSignatures:
        if self.sig is None:
            t0 = (time.perf_counter(), time.process_time())
            self.sig = collect(self.model, self.data.calib,
                               progress=lambda d, t: self.progress("attention signatures", d, t))
            self._time("signatures_s", t0)
        return self.sig

    def distance(self) -> np.ndarray:
        return metric(self.signatures().mean_jsd, sqrt=self.sqrt_jsd).numpy().astype(np.float64)

    def _salience(self, mask: torch.Tensor | None = None, round_idx: int = 0) -> np.ndarray:
        """Salience at ``mask``. Rounds after the first may use a rotating share of the calibration
        batches (``round_fraction``): every batch is length-sorted, so a strided share spans all lengths."""
        t0 = (time.perf_counter(), time.process_time())
        batches = self.data.calib
        if self.salience_labels == "predicted" and self._targets is None:
            preds = self.signatures().predictions  # from the signature pass: no extra forward
            self._targets = preds if preds is not None else dense_predictions(self.model, batches)
        targets = self._targets
        stride = max(1, round(1 / self.round_fraction))
        if round_idx > 0 and stride > 1 and len(batches) >= stride:
            j = (round_idx - 1) % stride
            batches = Batches(batches.items[j::stride])
            targets = None if targets is None else targets[j::stride]
        s = head_salience(
            self.model,
            self.adapter,
            batches,
            mask,
            normalize_layers=self.normalize_salience,
            kind=self.salience_kind,
            targets=targets,
        )
        self._time("salience_s", t0)
        return self.index.flat(s).numpy().astype(np.float64)

    def _cluster(self, dist: np.ndarray, k: int) -> np.ndarray:
        """Labels of the budget-aware clustering for a budget of k heads: ``coverage(k)`` groups
        (labels all -1 when it is 0: no group is protected, salience alone decides)."""
        t0 = (time.perf_counter(), time.process_time())
        c = coverage(k, self.index.n, self.coverage_from, self.coverage_full)
        self.info.setdefault("coverage", {})[int(k)] = c
        labels = graph.cluster(dist, c, self.clustering, self.seed) if c else np.full(dist.shape[0], -1)
        self._time("clustering_s", t0)  # recorded (as ~0) when no group is protected, too
        return labels

    def _weighted(self, dist: np.ndarray, sal: np.ndarray) -> np.ndarray:
        """Salience-aware graph: d_ij * ((r_i + r_j) / 2) ** gamma, r = salience rank in (0, 1].

        Two low-salience heads with similar attention become close (one of them goes); a salient
        head stays far from everything and tends to remain its own cluster. gamma = 0: plain JSD graph.
        """
        if self.salience_weight == 0:
            return dist
        r = (np.argsort(np.argsort(sal, kind="stable"), kind="stable") + 1) / len(sal)
        w = ((r[:, None] + r[None, :]) / 2) ** self.salience_weight
        return dist * w

    def _representatives(self, ids: np.ndarray, labels: np.ndarray, sal: np.ndarray, k: int) -> list[int]:
        """Most salient head of every protected cluster; the most salient remaining heads fill the rest
        of the budget (so a plan always keeps exactly k heads)."""
        kept = []
        for c in sorted(set(labels.tolist()) - {-1}):
            members = ids[labels == c]
            kept.append(int(members[_stable_desc(sal[members])[0]]))
        return _fill(kept, ids, sal, k)

    def _representatives_by_loss(
        self, ids: np.ndarray, labels: np.ndarray, sal: np.ndarray, k: int
    ) -> list[int]:
        """Per cluster with several heads, keep the member whose survival (the cluster's other members
        removed, every other cluster untouched) gives the lowest cross-entropy (gold labels) on a fixed
        strided share of the calibration batches. Single-head clusters keep their head; clusters are decided
        independently, so one round costs one forward pass of that share per candidate head."""
        from cahp_edge.prune.salience import masked_eval

        t0 = (time.perf_counter(), time.process_time())
        if self._loss_batches is None:
            items = self.data.calib.items
            stride = max(1, round(self.data.calib.num_examples / max(1, self.loss_examples)))
            self._loss_batches = Batches(items[::stride])
        kept = []
        for c in sorted(set(labels.tolist()) - {-1}):
            members = ids[labels == c]
            if len(members) == 1:
                kept.append(int(members[0]))
                continue
            others = ids[labels != c]
            losses = [
                masked_eval(
                    self.model, self.adapter, self._loss_batches, self.index.mask_of([*others, int(h)])
                )[1]
                for h in members
            ]
            kept.append(int(members[int(np.argmin(losses))]))
            self.info["loss_evaluations"] = self.info.get("loss_evaluations", 0) + len(members)
        self._time("representative_loss_s", t0)
        return _fill(kept, ids, sal, k)

    # ---- Selector ----------------------------------------------------------------------------------
    def masks(self, counts: list[int]) -> dict[int, torch.Tensor]:
        dist = self.distance()
        self.info["distance_summary"] = summary(self.signatures().mean_jsd, self.index.heads_per_layer)
        self.info["calibration_rows"] = self.sig.rows
        if self.schedule == "oneshot":
            return self._oneshot(dist, counts)
        return self._iterative(dist, counts)

    def _oneshot(self, dist: np.ndarray, counts: list[int]) -> dict[int, torch.Tensor]:
        sal = self._salience()
        self.info["salience"] = sal.tolist()
        ids = np.arange(self.index.n)
        out = {}
        for i, k in enumerate(counts):
            self.progress("clustering", i, len(counts))
            labels = self._cluster(self._weighted(dist, sal), k)
            out[k] = self.index.mask_of(self._representatives(ids, labels, sal, k))
            self.info.setdefault("clusters", {})[k] = labels.tolist()
        return out

    def _iterative(self, dist: np.ndarray, counts: list[int]) -> dict[int, torch.Tensor]:
        n = self.index.n
        step = max(1, round(n * self.step_fraction))
        total = _rounds(n, step, counts)
        kept = np.arange(n)
        out, rounds = {}, 0
        first_sal = None
        for target in sorted(counts, reverse=True):
            while len(kept) > target:
                mask = self.index.mask_of(kept)
                sal = self._salience(mask, rounds)
                if first_sal is None:
                    first_sal = sal
                k_next = max(target, len(kept) - step)
                labels = self._cluster(self._weighted(dist[np.ix_(kept, kept)], sal[kept]), k_next)
                if len(kept) <= self.loss_below * n:
                    kept = np.array(self._representatives_by_loss(kept, labels, sal, k_next))
                else:
                    kept = np.array(self._representatives(kept, labels, sal, k_next))
                rounds += 1
                self.progress("selection rounds", rounds, total)
            out[target] = self.index.mask_of(kept)
        if first_sal is None:
            first_sal = self._salience()
        self.info["salience"] = first_sal.tolist()
        self.info["rounds"] = rounds
        return out


def coverage(k: int, n: int, start: float, full: float) -> int:
    """The budget-aware rule: how many of the k kept heads (of n) must represent distinct clusters.

    w(r) at keep ratio r = k / n is 0 for r >= ``start`` (salience order alone), 1 for r <= ``full``
    (every kept head represents its own cluster: one per cluster, the original CAHP), linear between.
    Why: removing a few heads costs about the sum of their saliences (first order: each removed head's
    neighbours still stand in for it), so ranking is right at mild compression; the more heads go, the
    likelier a whole group of similar heads goes with them, which salience cannot see and clustering
    prevents (docs/cahp.md, "Budget-aware complementarity").
    """
    r = k / n
    w = 1.0 if r <= full else 0.0 if r >= start else (start - r) / (start - full)
    return round(k * w)


def _rounds(n: int, step: int, counts: list[int]) -> int:
    """How many salience + clustering rounds _iterative runs (each keeps exactly its k_next heads)."""
    left, rounds = n, 0
    for target in sorted(counts, reverse=True):
        while left > target:
            left, rounds = max(target, left - step), rounds + 1
    return rounds


def _fill(kept: list[int], ids: np.ndarray, sal: np.ndarray, k: int) -> list[int]:
    """Exactly k heads: when the clustering returned fewer than k groups, the most salient remaining
    heads fill the budget."""
    if len(kept) < k:
        taken = set(kept)
        kept = kept + [int(h) for h in ids[_stable_desc(sal[ids])] if int(h) not in taken][: k - len(kept)]
    return sorted(kept[:k])
