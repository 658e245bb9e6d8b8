"""What `cahp-edge inspect` reports for a checkpoint, a release folder or an ONNX file.

A release has no PyTorch weights, but its config.json and cahp_heads.json give the pruned
architecture exactly, so heads, parameters and MACs are counted on a weightless skeleton; the ONNX
graph adds what the device really loads (file size, stored parameters, quantized operators).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from cahp_edge.errors import ModelError

QUANT_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear",
             "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QGemm"}


def onnx_summary(path: Path) -> dict[str, Any]:
    """File size, stored parameters by dtype, operator counts and whether the graph is quantized."""
    import onnx
    from onnx import helper

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ModelError(f"{path} is not a readable ONNX model", why,
                         "re-copy the file or rebuild the release") from None
    by_dtype: Counter[str] = Counter()
    for t in m.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        by_dtype[helper.tensor_dtype_to_np_dtype(t.data_type).name] += n
    ops = Counter(node.op_type for node in m.graph.node)
    return {"file": str(path), "size_mb": round(path.stat().st_size / 2**20, 3),
            "opset": max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=None),
            "stored_params": sum(by_dtype.values()), "params_by_dtype": dict(by_dtype),
            "quantized": bool(QUANT_OPS & set(ops)), "nodes": sum(ops.values()),
            "top_ops": dict(ops.most_common(8))}


def _is_release(d: Path) -> bool:
    return (d / "cahp_heads.json").is_file() and any((d / n).is_file() for n in ("model.onnx", "model.ort"))


def inspect_path(path: str, seq_len: int, trust_pickle: bool = False) -> dict[str, Any]:
    """Everything inspect reports, as one dict (``kind``: checkpoint, release or onnx)."""
    from cahp_edge.model.accounting import model_cost

    p = Path(path)
    if p.is_file() and p.suffix == ".onnx":
        out: dict[str, Any] = {"kind": "onnx", "model": str(p), "onnx": onnx_summary(p)}
        if _is_release(p.parent):  # an ONNX file inside a release: the architecture is known too
            out.update(_release_cost(p.parent, seq_len))
        return out
    if p.is_dir() and _is_release(p):
        onnx_file = p / "model.onnx"
        out = {"kind": "release", "model": str(p), **_release_cost(p, seq_len),
               "onnx": onnx_summary(onnx_file) if onnx_file.is_file() else None,
               "release": _release_facts(p)}
        return out
    from cahp_edge.model.load import load_model

    lm = load_model(path, trust_pickle=trust_pickle, require_tokenizer=False)
    cost = model_cost(lm.model, seq_len, lm.adapter)
    return {"kind": "checkpoint", "model": str(lm.path), "model_type": lm.model.config.model_type,
            "pruned": lm.pruned, "source_hash": lm.source_hash, **cost.to_dict()}


def _release_cost(d: Path, seq_len: int) -> dict[str, Any]:
    from cahp_edge.model.accounting import model_cost
    from cahp_edge.model.load import pruned_skeleton

    model, adapter, _, meta = pruned_skeleton(d)
    cost = model_cost(model, seq_len, adapter)
    return {"model_type": model.config.model_type, "pruned": True, "source_hash": meta.get("source_hash", ""),
            **cost.to_dict()}


def _release_facts(d: Path) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    try:
        man = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        facts |= {"target": man.get("target"), "built_at": man.get("built_at"),
                  "files": len(man.get("files", {}))}
        met = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        facts |= {"accuracy": (met["models"].get("shipped") or {}).get("accuracy"),
                  "budgets": met["budgets"]["status"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # inspect describes what is there; `cahp-edge verify` is the check for completeness
    facts["pytorch"] = (d / "pytorch" / "cahp_heads.json").is_file()
    return facts
