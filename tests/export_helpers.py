"""Shared helpers for the export / optimize / quantize tests: tiny pruned models, exported once."""

from __future__ import annotations

from pathlib import Path

from tiny import TINY_CONFIGS, tiny_model

FAMILIES = sorted(TINY_CONFIGS)
_CACHE: dict[tuple[str, bool], Path] = {}


def uneven_plan(num_layers: int, heads: int):
    """Every layer a different count, one layer with zero heads."""
    from cahp_edge.plan import HeadPlan

    kept = []
    for layer in range(num_layers):
        kept.append([(0, 2), (), tuple(range(1, heads))][layer % 3])
    return HeadPlan((heads,) * num_layers, tuple(tuple(k) for k in kept))


def pruned_tiny(family: str, seed: int = 0):
    from cahp_edge.arch import get_adapter
    from cahp_edge.reshape import reshape

    m = tiny_model(family, seed=seed)
    ad = get_adapter(m.config)
    plan = uneven_plan(ad.num_layers(m.config), ad.num_heads(m.config))
    return reshape(m, plan, ad), plan


def exported(tmp_factory, family: str, optimized: bool = False) -> Path:
    """Folder of the exported (and optionally optimized) pruned tiny model, built once per session."""
    from cahp_edge.export import export_onnx
    from cahp_edge.optimize import optimize_onnx

    key = (family, optimized)
    if key not in _CACHE:
        base = _CACHE.get((family, False))
        if base is None:
            model, _ = pruned_tiny(family)
            base = tmp_factory.mktemp(f"onnx-{family}") / "export"
            export_onnx(model, base)
            _CACHE[(family, False)] = base
        if optimized:
            out = base.parent / "opt"
            optimize_onnx(base, out)
            _CACHE[key] = out
    return _CACHE[key]
