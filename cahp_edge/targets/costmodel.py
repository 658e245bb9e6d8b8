"""A target's latency cost model: milliseconds per kept head and per kept FFN neuron, measured.

    cost = measure_cost(model_dir, load_target("x86-64-avx512-vnni"))   # UnitCost in ms, or None
    cost.of(heads_per_layer, neurons_per_layer)                         # predicted p50, ms

The source model is cut to a few uniform widths (all heads and neurons, half of either, half of both, a
quarter of both), each exported, quantized with the target's own recipe and timed with ONNX Runtime
under the target's session settings (threads, disabled optimizers), batch 1 at the profile's benchmark
sequence length, interleaved in rounds so machine noise hits every width alike. A least-squares line
``p50 = fixed + a * heads + b * neurons`` through the medians is the cost model (its fit error is
recorded). Only measured on this host when the host runs the target's instruction set (x86 targets on
an x86 build host); otherwise the caller falls back to MACs, labelled as such.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from cahp_edge.prune.cost import UnitCost

# (share of heads, share of neurons) per layer for the measured widths
WIDTHS = ((1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.5, 0.5), (0.25, 0.25))
COST_MODEL_VERSION = 1  # part of the cost stage's cache key: bump when the measurement changes
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def measurable_here(target) -> bool:
    """Whether this host runs the target's instruction set (so a host timing stands for the target's)."""
    return HOST_ARCH.get(platform.machine().lower()) == target.arch


def _uniform_plan(heads: list[int], widths: list[int], fh: float, fn: float):
    from cahp_edge.plan import HeadPlan

    kh = [max(1, round(fh * h)) for h in heads]  # >= 1: zero-head layers are a different graph
    kn = [max(1, round(fn * w)) for w in widths]
    return HeadPlan(tuple(heads), tuple(tuple(range(k)) for k in kh), {}, tuple(widths),
                    tuple(tuple(range(k)) for k in kn))


def _feeds(names: list[str], seq_len: int, vocab: int) -> dict:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, vocab, size=(1, seq_len)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {k: v for k, v in feeds.items() if k in names}


def measure_cost(model_dir: str | Path, target, seq_len: int | None = None, runs: int = 30,
                 rounds: int = 4) -> UnitCost:
    """Measure the target's cost per head and per neuron on this host (see the module doc)."""
    import torch

    from cahp_edge.deploy.export import export_onnx, session
    from cahp_edge.deploy.graph import empty_weight_nodes
    from cahp_edge.deploy.optimize import load_onnx
    from cahp_edge.deploy.quantize_ops import run_quantizer
    from cahp_edge.model.load import load_model
    from cahp_edge.model.reshape import reshape

    T = int(seq_len or target.benchmark.seq_len)
    lm = load_model(model_dir, require_tokenizer=False)
    heads, widths = lm.adapter.heads_per_layer(lm.model), lm.adapter.neurons_per_layer(lm.model)
    names = list(lm.adapter.export_inputs)
    feeds = _feeds(names, T, int(lm.model.config.vocab_size))
    sessions, points = [], []
    with tempfile.TemporaryDirectory(prefix="cahp-cost-") as td:
        for i, (fh, fn) in enumerate(WIDTHS):
            plan = _uniform_plan(heads, widths, fh, fn)
            with torch.no_grad():
                m = reshape(lm.model, plan, lm.adapter)
            d = Path(td) / f"w{i}"
            export_onnx(m, d / "e", batches=[{k: v[:, : min(T, 16)] for k, v in feeds.items()}])
            src = d / "e" / "model.onnx"
            q, _ = run_quantizer(src, d / "q.onnx", target.quantization, empty_weight_nodes(load_onnx(src)),
                                 None, d, 0)
            sessions.append(session(q, int(target.threads), disabled_optimizers=target.disabled_optimizers))
            points.append((sum(plan.heads_per_layer), sum(plan.neurons_per_layer)))
        times: list[list[float]] = [[] for _ in sessions]
        for s in sessions:  # warm-up
            for _ in range(3):
                s.run(None, feeds)
        for _ in range(rounds):  # interleaved rounds: noise hits every width alike
            for j, s in enumerate(sessions):
                for _ in range(runs // rounds):
                    t0 = time.perf_counter()
                    s.run(None, feeds)
                    times[j].append(1000 * (time.perf_counter() - t0))
    p50 = np.array([float(np.median(t)) for t in times])
    X = np.array([[1.0, h, n] for h, n in points])
    coef, *_ = np.linalg.lstsq(X, p50, rcond=None)
    # a unit never makes a model faster: noise-driven negative slopes are clamped, and the stated fit
    # error is that of the clamped line (what every prediction uses)
    fixed = max(float(coef[0]), 0.0)
    per_head, per_neuron = max(float(coef[1]), 1e-9), max(float(coef[2]), 1e-9)
    err = float(np.max(np.abs(X @ np.array([fixed, per_head, per_neuron]) - p50) / p50))
    return UnitCost(per_head=per_head, per_neuron=per_neuron, fixed=fixed, unit="ms",
                    source=(f"measured: {target.name} int8 recipe under its ORT session "
                            f"({target.threads} threads) on this host, batch 1, seq {T}, p50 of "
                            f"{len(times[0])} runs at {len(WIDTHS)} uniform widths, linear fit within "
                            f"{100 * err:.0f}%"),
                    measured=[{"heads": h, "neurons": n, "p50_ms": round(float(t), 4)}
                              for (h, n), t in zip(points, p50, strict=True)])
