"""Shared helpers for the export / optimize / quantize tests: tiny pruned models, exported once."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.tiny import TINY_CONFIGS, tiny_model

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
    from cahp_edge.model.reshape import reshape

    m = tiny_model(family, seed=seed)
    ad = get_adapter(m.config)
    plan = uneven_plan(ad.num_layers(m.config), ad.num_heads(m.config))
    return reshape(m, plan, ad), plan


def exported(tmp_factory, family: str, optimized: bool = False) -> Path:
    """Folder of the exported (and optionally optimized) pruned tiny model, built once per session."""
    from cahp_edge.deploy.export import export_onnx
    from cahp_edge.deploy.optimize import optimize_onnx

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


def random_examples(folder: Path, n: int = 128, seed: int = 3):
    """``n`` random ragged rows (16 per batch, varying lengths) shaped for the folder's inputs."""
    import json

    import numpy as np

    from cahp_edge.deploy.quantize_ops import Examples

    meta = json.loads((Path(folder) / "cahp_onnx.json").read_text())
    vocab = json.loads((Path(folder) / "config.json").read_text())["vocab_size"]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(0, n, 16):
        T = int(rng.integers(6, 30))
        ids = rng.integers(5, vocab, size=(16, T))
        mask = np.ones_like(ids)
        for r in range(16):
            mask[r, int(rng.integers(3, T + 1)):] = 0
        b = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        out.append({k: v for k, v in b.items() if k in meta["inputs"]})
    return Examples(out, None)


def recipe_target(name: str = "test", arch: str = "x86_64", formats=("onnx",), max_drop: float = 0.01, **kw):
    """A target-like object with a recipe (the fields cahp_edge.targets.QuantRecipe defines)."""
    from dataclasses import dataclass, field

    @dataclass
    class Recipe:
        mode: str = "dynamic"
        format: str = "QOperator"
        per_channel: bool = True
        reduce_range: bool = False
        activation_type: str = "uint8"
        weight_type: str = "int8"
        calibration_method: str = "minmax"
        calibration_size: int = 32
        op_types: list = field(default_factory=lambda: ["MatMul", "Attention"])
        exclude_nodes: list = field(default_factory=list)

    @dataclass
    class Budgets:
        max_accuracy_drop: float

    @dataclass
    class Target:
        name: str
        arch: str
        formats: list
        quantization: Recipe
        budgets: Budgets
        opset: int = 17

    return Target(name, arch, list(formats), Recipe(**kw), Budgets(max_drop))
