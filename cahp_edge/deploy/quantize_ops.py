"""The quantizer calls behind `cahp-edge quantize`: recipe checks, ORT quantization, scoring helpers.

Facts this module relies on (ONNX Runtime 1.32, measured here):
- ``quantize_dynamic`` on a fused graph (com.microsoft ops) fails shape inference unless
  ``DefaultTensorType`` is given; it rewrites Gemm as MatMul, so pooler/classifier are quantized too.
- ORT's dynamic quantization only writes QOperator ops; the QDQ form is built here (weights through
  DequantizeLinear, activations through DynamicQuantizeLinear -> DequantizeLinear), and ORT's QDQ
  transformer fuses it back into integer kernels when the session is created.
- Static quantization of the pooler can fail with "Unable to get valid quantization scale": we
  then exclude pooler/classifier nodes and retry. ``quant_pre_process`` needs
  ``skip_symbolic_shape=True`` on fused graphs. Percentile over many ops fails ("Too many bins").
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cahp_edge.data.encode import cap_chars
from cahp_edge.deploy.graph import head_nodes
from cahp_edge.errors import QuantizeError


# ---- recipe ------------------------------------------------------------------------------------
def check_recipe(recipe, target) -> None:
    """Contradictory settings are a QuantizeError naming the setting (the schema checks single keys)."""
    name = getattr(target, "name", "?")
    mode, fmt = recipe.mode, recipe.format
    act, wt = recipe.activation_type, recipe.weight_type

    def bad(setting: str, why: str, fix: str) -> QuantizeError:
        return QuantizeError(f"target {name}: quantization setting '{setting}' contradicts the recipe",
                             why, fix)

    if mode not in ("dynamic", "static", "fp16", "none"):
        raise bad("mode", f"unknown mode {mode!r}", 'use "dynamic", "static", "fp16" or "none"')
    if mode == "dynamic" and act != "uint8":
        raise bad("activation_type", "dynamic quantization computes activation scales at run time with "
                  "DynamicQuantizeLinear, which only emits uint8",
                  'set activation_type = "uint8" or mode = "static"')
    if mode == "dynamic" and recipe.calibration_method != "minmax":
        raise bad("calibration_method", "dynamic quantization does not calibrate",
                  'remove calibration_method or set mode = "static"')
    if mode in ("dynamic", "static") and not list(recipe.op_types):
        raise bad("op_types", "empty, so nothing would be quantized",
                  'list e.g. ["MatMul"] or set mode = "none"')
    if getattr(target, "arch", "") == "aarch64" and recipe.reduce_range and mode in ("dynamic", "static"):
        raise bad("reduce_range", "7-bit weights only avoid int16 saturation in x86 AVX2/AVX-512 kernels "
                  "without VNNI; ARM64 int8 kernels do not saturate, so it only loses precision",
                  "set reduce_range = false for ARM64 targets")
    if mode == "static" and fmt == "QOperator" and act == "int8" and wt == "uint8":
        raise bad("weight_type", "int8 activations with uint8 weights have no ORT kernel",
                  'use weight_type = "int8"')
    if mode == "static" and recipe.calibration_method == "percentile" and len(list(recipe.op_types)) > 2:
        raise bad("calibration_method", "percentile calibration over many op types fails in ORT (\"Too many "
                  "bins\")", 'restrict op_types to ["MatMul"] or use "minmax"/"entropy"')


# ---- data --------------------------------------------------------------------------------------
@dataclass
class Examples:
    batches: list[dict[str, np.ndarray]]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return sum(len(b["input_ids"]) for b in self.batches)

    def head(self, n: int) -> Examples:
        out, left = [], n
        for b in self.batches:
            if left <= 0:
                break
            k = min(left, len(b["input_ids"]))
            out.append({key: v[:k] for key, v in b.items()})
            left -= k
        return Examples(out, None if self.labels is None else self.labels[: n])

    def padded(self, pad_id: int, rows: bool = False) -> Examples:
        """Every batch padded on the right to the longest sequence (split into single rows if asked)."""
        T = max(b["input_ids"].shape[1] for b in self.batches)
        out = []
        for b in self.batches:
            extra = T - b["input_ids"].shape[1]
            pb = {k: np.pad(v, ((0, 0), (0, extra)), constant_values=pad_id if k == "input_ids" else 0)
                  for k, v in b.items()}
            n = len(pb["input_ids"])
            out += [{k: v[i:i + 1] for k, v in pb.items()} for i in range(n)] if rows else [pb]
        return Examples(out, self.labels)


def examples_from(data, folder: Path, names: list[str], batch_size: int = 32,
                  max_length: int = 128) -> Examples:
    """Examples from ``(batches, labels)`` or a TextDataset tokenized with the folder's tokenizer."""
    if isinstance(data, Examples):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        batches, labels = data
        return Examples(list(batches), None if labels is None else np.asarray(labels))
    if not hasattr(data, "texts"):
        raise QuantizeError(f"unsupported data object {type(data).__name__}",
                            "expected a dataset or (batches, labels)",
                            "pass --calib-data / --select-data files")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:
        raise QuantizeError(f"no usable tokenizer in {folder}", f"{type(e).__name__}: {str(e)[:150]}",
                            "export from a checkpoint folder that has tokenizer files") from e
    pairs = getattr(data, "pairs", None)
    order = sorted(range(len(data.texts)), key=lambda i: len(data.texts[i]))  # similar lengths pad less
    batches = []
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        a = cap_chars([data.texts[i] for i in idx], max_length)
        b = cap_chars([pairs[i] for i in idx], max_length) if pairs is not None else None
        enc = tok(a, b, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        batch = {n: np.asarray(enc[n], dtype=np.int64) for n in names if n in enc}
        if "token_type_ids" in names and "token_type_ids" not in batch:
            batch["token_type_ids"] = np.zeros_like(batch["input_ids"])
        batches.append(batch)
    labels = getattr(data, "labels", None) if getattr(data, "labelled", True) else None  # -1 placeholders
    return Examples(batches, None if labels is None else np.asarray([labels[i] for i in order]))


def accuracy(logits: list[np.ndarray], labels: np.ndarray) -> float:
    pred = np.concatenate([lg.argmax(-1) for lg in logits])
    return float((pred == labels[: len(pred)]).mean()) if len(pred) else 0.0


def agreement(a: list[np.ndarray], b: list[np.ndarray], task: str = "sequence-classification") -> float:
    """How far two models' outputs agree: argmax agreement (every position's, for token logits), or the
    mean cosine between matching rows for sentence embeddings."""
    if task == "sentence-embedding":
        from cahp_edge.runtime.similarity import pair_cosines

        c = np.concatenate([pair_cosines(x, y) for x, y in zip(a, b, strict=True)]) if a else np.ones(0)
        return float(c.mean()) if len(c) else 1.0
    pa = np.concatenate([x.argmax(-1).ravel() for x in a])
    pb = np.concatenate([x.argmax(-1).ravel() for x in b])
    return float((pa == pb).mean()) if len(pa) else 1.0


# ---- quantizers --------------------------------------------------------------------------------
def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if name == "int8" else QuantType.QUInt8


def run_quantizer(src: Path, dst: Path, recipe, exclude: list[str], cal: Examples | None,
                  workdir: Path, pad_id: int = 0) -> tuple[Path, list[str]]:
    """Write the quantized graph to ``dst``; return it with any warnings."""
    with quiet():
        return _run(src, dst, recipe, exclude, cal, workdir, pad_id)


@contextlib.contextmanager
def quiet():
    """ORT's quantizer logs through the root logger and C++ stderr; the artifact carries what matters."""
    import onnxruntime as ort

    old = logging.root.manager.disable
    logging.disable(logging.WARNING)
    ort.set_default_logger_severity(3)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(old)


def _run(src: Path, dst: Path, recipe, exclude: list[str], cal: Examples | None, workdir: Path, pad_id: int):
    import onnx

    mode = recipe.mode
    try:
        if mode == "none":
            shutil.copy2(src, dst)
            return dst, []
        if mode == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            from cahp_edge.deploy.optimize import save_onnx

            m = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, disable_shape_infer=True,
                                         node_block_list=list(exclude))
            save_onnx(m, dst)
            return dst, []
        if mode == "dynamic":
            if recipe.format == "QDQ":
                from cahp_edge.deploy.quantize_qdq import quantize_dynamic_qdq

                quantize_dynamic_qdq(src, dst, recipe, exclude)
                return dst, []
            from onnxruntime.quantization import quantize_dynamic

            quantize_dynamic(str(src), str(dst), weight_type=_qtype(recipe.weight_type),
                             per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                             op_types_to_quantize=list(recipe.op_types),
                             # Gemm "X" is quantized as MatMul "X_MatMul": exclude it under both names
                             nodes_to_exclude=[*exclude, *(f"{n}_MatMul" for n in exclude)],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                            "MatMulConstBOnly": True})
            return dst, []
        return _static(src, dst, recipe, exclude, cal, workdir, pad_id)
    except QuantizeError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise QuantizeError(f"{mode} quantization failed", f"{type(e).__name__}: {first}",
                            "try another recipe in the target profile (e.g. mode = \"dynamic\") "
                            "or exclude the failing node with exclude_nodes") from e


def _static(src: Path, dst: Path, recipe, exclude: list[str], cal: Examples, workdir: Path, pad_id: int):
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = workdir / "pre.onnx"
    if not pre.exists():
        # symbolic shape inference knows ORT's fused ops (without it, activations of a fused graph have
        # no type and only weights get quantized); fall back to ONNX inference, then to the bare graph
        for skip in (False, True):
            try:
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=skip, skip_optimization=True)
                break
            except Exception:  # pre-processing only helps
                continue
        else:
            shutil.copy2(src, pre)
    # histogram calibrators stack activations across runs: one length, and one row per run
    cal = cal.padded(pad_id, rows=recipe.calibration_method != "minmax")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[recipe.calibration_method]

    class Reader:
        def __init__(self) -> None:
            self.it = iter(cal.batches)

        def get_next(self):
            return next(self.it, None)

    def run(excl):
        quantize_static(str(pre), str(dst), Reader(),
                        quant_format=QuantFormat.QDQ if recipe.format == "QDQ" else QuantFormat.QOperator,
                        op_types_to_quantize=list(recipe.op_types), per_channel=recipe.per_channel,
                        reduce_range=recipe.reduce_range, activation_type=_qtype(recipe.activation_type),
                        weight_type=_qtype(recipe.weight_type), nodes_to_exclude=list(excl),
                        calibrate_method=method,
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                       "CalibMaxIntermediateOutputs": 64})

    try:
        run(exclude)
        return dst, []
    except Exception as e:
        msg = str(e)
        if "Too many bins" in msg:
            raise QuantizeError("percentile calibration failed (\"Too many bins\")",
                                "ORT's histogram cannot cover this many activations",
                                'restrict op_types to ["MatMul"] or use calibration_method = "minmax"') from e
        if "valid quantization scale" not in msg:
            raise
    heads = [n for n in head_nodes(pre) if n not in exclude]
    run([*exclude, *heads])
    return dst, [f"static quantization of the pooler/classifier failed (no valid scale); "
                 f"kept {heads} in fp32"]
