"""`cahp-edge quantize ONNX_DIR --target NAME --out DIR`: the graph shipped to one target.

The target profile's recipe decides everything (targets are data): dynamic int8 (QOperator, or QDQ
for runtimes that fuse QDQ themselves), static int8 with calibration on task data, fp16 for GPU
providers, or none. Quantizing a pruned model can cost accuracy, so when a selection split with
labels is given and accuracy drops by more than the target's budget, the most sensitive nodes are
kept in fp32 one at a time (greedily) until it fits; the nodes kept are recorded in the artifact.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cahp_edge.deploy.export import META_FILE, ONNX_FILE, load_reference, ort_logits, read_meta, session
from cahp_edge.deploy.graph import empty_weight_nodes, quantizable_nodes, quantized_matmul_count
from cahp_edge.deploy.optimize import copy_side_files, load_onnx
from cahp_edge.deploy.quantize_ops import (
    Examples,
    accuracy,
    agreement,
    check_recipe,
    examples_from,
    run_quantizer,
)
from cahp_edge.errors import QuantizeError
from cahp_edge.fsutil import atomic_dir

RANK_EXAMPLES = 256
RECIPE_FIELDS = ("mode", "format", "per_channel", "reduce_range", "activation_type", "weight_type",
                 "calibration_method", "calibration_size", "op_types", "exclude_nodes")


@dataclass
class QuantizedModel:
    path: Path
    target: str
    recipe: dict
    fp32_nodes: list[str]  # nodes the accuracy gate kept in fp32 (plus the recipe's exclude_nodes)
    agreement: float  # argmax agreement with the fp32 model on the selection (or parity) inputs
    quantized_matmuls: int
    accuracy: dict = field(default_factory=dict)  # fp32, quantized, drop, budget (when labels given)
    warnings: list[str] = field(default_factory=list)
    ort_path: Path | None = None

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    def to_dict(self) -> dict:
        return {"path": str(self.path), "target": self.target, "mode": self.recipe.get("mode"),
                "fp32_nodes": self.fp32_nodes, "agreement": self.agreement,
                "quantized_matmuls": self.quantized_matmuls, "accuracy": self.accuracy,
                "warnings": self.warnings, "ort_path": str(self.ort_path) if self.ort_path else None}


def recipe_dict(recipe) -> dict:
    d = {f: getattr(recipe, f) for f in RECIPE_FIELDS if hasattr(recipe, f)}
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()}


def quantize(model, target, out: Path, *, calib=None, select=None, calib_size: int | None = None,
             overwrite: bool = False, progress=None, max_select: int = 1000) -> QuantizedModel:
    """Quantize an exported/optimized folder for ``target`` (a loaded profile: targets.profile.load_target);
    gate accuracy on ``select`` if it has labels.

    ``calib`` / ``select``: a cahp_edge.data.TextDataset (tokenized with the folder's tokenizer), or
    ``(batches, labels)`` with batches of model inputs as numpy arrays (labels may be None).
    """
    recipe = target.quantization
    check_recipe(recipe, target)
    src = Path(getattr(model, "path", model))
    meta = read_meta(src)
    if meta.get("stage") not in ("export", "optimize"):
        raise QuantizeError(f"{src} holds an already '{meta.get('stage')}' model",
                            "quantize needs the fp32 graph",
                            "pass the folder written by `cahp-edge export` or `cahp-edge optimize`")
    load_onnx(src / ONNX_FILE)  # one clear error for a truncated file
    names = list(meta["inputs"])
    want_calib = int(calib_size or recipe.calibration_size)
    cal = sel = None
    if recipe.mode == "static":
        if calib is None:
            raise QuantizeError("static quantization needs calibration data",
                                f"target {target.name} uses mode = \"static\"",
                                "pass --calib-data (task training data) or use a dynamic target")
        cal = examples_from(calib, src, names)
        if len(cal) < want_calib:
            asked = (f"--calib-size {want_calib}" if calib_size else
                     f"calibration_size = {want_calib} in target {target.name}")
            lower = "--calib-size" if calib_size else "calibration_size (or pass --calib-size)"
            raise QuantizeError(f"calibration data has {len(cal)} examples, fewer than the {want_calib} "
                                "asked", asked, f"give at least {want_calib} examples or lower {lower}")
        cal = cal.head(want_calib)
    if select is not None:
        sel = examples_from(select, src, names).head(max_select)
    else:  # no task data: agreement on the export's parity inputs (no labels, so no accuracy gate)
        batches, _ = load_reference(src)
        sel = Examples(batches, None)

    with tempfile.TemporaryDirectory(prefix="cahp-quant-") as td:
        td = Path(td)
        fp32_logits = ort_logits(session(src / ONNX_FILE), sel.batches)
        # zero-neuron FFN projections have empty weights: nothing to quantize (ORT's quantizers fail on them)
        empty = empty_weight_nodes(load_onnx(src / ONNX_FILE))
        exclude = list(dict.fromkeys([*recipe.exclude_nodes, *empty]))
        warnings: list[str] = []
        pad_id = _pad_id(src)
        qpath, w = run_quantizer(src / ONNX_FILE, td / "q.onnx", recipe, exclude, cal, td, pad_id)
        warnings += w
        q_logits = ort_logits(session(qpath), sel.batches)
        acc = {}
        kept: list[str] = []
        task = meta.get("task", "sequence-classification")
        # embeddings and taggers are gated on agreement with the fp32 graph (mean cosine; every position's
        # argmax): their selection rows carry no per-row class label
        gated = sel.labels is not None or (task != "sequence-classification" and select is not None)
        if gated:
            def score(lg):
                if sel.labels is not None:
                    return accuracy(lg, sel.labels)
                return agreement(fp32_logits, lg, task)

            measure = "accuracy" if sel.labels is not None else "mean cosine to the fp32 graph" \
                if task == "sentence-embedding" else "tag agreement with the fp32 graph"
            budget = float(target.budgets.max_accuracy_drop)
            a32, aq = score(fp32_logits), score(q_logits)
            if a32 - aq > budget and recipe.mode in ("dynamic", "static"):
                qpath, q_logits, kept = _fallback(src / ONNX_FILE, td, recipe, exclude, cal, sel, fp32_logits,
                                                  a32, budget, progress, pad_id, score, task)
                aq = score(q_logits)
                warnings.append(f"accuracy gate: kept {len(kept)} node(s) in fp32 to stay within "
                                f"{budget:.3f} {measure} drop")
            acc = {"fp32": a32, "quantized": aq, "drop": a32 - aq, "budget": budget, "examples": len(sel),
                   "measure": measure}
        agree = agreement(fp32_logits, q_logits, task)
        qmodel = load_onnx(qpath)
        n_q = quantized_matmul_count(qmodel)
        with atomic_dir(Path(out), overwrite=overwrite) as tmp:
            shutil.copy2(qpath, tmp / ONNX_FILE)
            data = qpath.with_name(qpath.name + ".data")
            if data.is_file():  # > 2 GB: the graph refers to its weights file by this name
                shutil.copy2(data, tmp / data.name)
            copy_side_files(src, tmp)
            ort_path = None
            if "ort" in list(getattr(target, "formats", [])):
                from cahp_edge.deploy.mobile import convert_to_ort

                ort_path = convert_to_ort(tmp / ONNX_FILE, tmp)
            rd = recipe_dict(recipe)
            new_meta = dict(meta) | {"stage": "quantize", "target": target.name, "recipe": rd,
                                     "fp32_nodes": exclude + kept, "agreement": agree, "accuracy": acc,
                                     "quantized_matmuls": n_q, "warnings": warnings,
                                     "ort_file": ort_path.name if ort_path else None}
            (tmp / META_FILE).write_text(json.dumps(new_meta, indent=2, default=str) + "\n")
    out = Path(out)
    return QuantizedModel(out, target.name, rd, exclude + kept, agree, n_q, acc, warnings,
                          out / ort_path.name if ort_path else None)


def _fallback(fp32_path: Path, td: Path, recipe, exclude: list[str], cal, sel: Examples,
              fp32_logits, a32: float, budget: float, progress, pad_id: int, score, task: str):
    """Keep the most sensitive nodes in fp32, greedily, until the accuracy drop fits the budget.

    Sensitivity of a node = how many selection examples agree with fp32 when only that node is kept
    in fp32 (agreement is finer-grained than accuracy, so it ranks nodes that accuracy would tie).
    """
    candidates = [n for n in quantizable_nodes(load_onnx(fp32_path), recipe.op_types) if n not in exclude]
    rank = sel.head(RANK_EXAMPLES)  # ranking needs fewer examples than the final budget check
    rank_ref = ort_logits(session(fp32_path), rank.batches)
    scores = []
    for i, node in enumerate(candidates):
        if progress:
            progress(i, 2 * len(candidates))
        p, _ = run_quantizer(fp32_path, td / "rank.onnx", recipe, [*exclude, node], cal, td, pad_id)
        lg = ort_logits(session(p), rank.batches)
        scores.append((agreement(rank_ref, lg, task),
                       accuracy(lg, rank.labels) if rank.labels is not None else 0.0, node))
        p.unlink()
    scores.sort(key=lambda s: (-s[0], -s[1]))
    kept: list[str] = []
    for i, (_, _, node) in enumerate(scores):
        if progress:
            progress(len(candidates) + i, 2 * len(candidates))
        kept.append(node)
        p, _ = run_quantizer(fp32_path, td / f"g{i}.onnx", recipe, [*exclude, *kept], cal, td, pad_id)
        lg = ort_logits(session(p), sel.batches)
        if a32 - score(lg) <= budget:
            return p, lg, kept
        p.unlink()
    # every node in fp32: nothing left to quantize, which the budget always accepts
    return fp32_path, fp32_logits, kept


def _pad_id(folder: Path) -> int:
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return int(cfg.get("pad_token_id") or 0)


def fp32_accuracy(folder: Path, data) -> float:
    """Accuracy of an ONNX folder on labelled data (for reports)."""
    meta = read_meta(folder)
    ex = examples_from(data, Path(folder), list(meta["inputs"]))
    if ex.labels is None:
        raise QuantizeError("data has no labels", "", "pass a labelled split")
    return accuracy(ort_logits(session(Path(folder) / ONNX_FILE), ex.batches), ex.labels)


__all__ = ["QuantizedModel", "quantize"]
