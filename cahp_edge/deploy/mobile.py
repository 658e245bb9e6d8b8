"""ORT format (`.ort`) and the operator list for a reduced ONNX Runtime build (mobile targets).

Called by `cahp-edge quantize --target android-arm64` when the target lists "ort" in ``formats``.
The conversion mirrors ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` (fixed
optimizations, NCHWc layout transformer disabled because it is x86-specific), and the operator
config is what ``build.sh --include_ops_by_config`` reads to build a runtime with only these kernels.
"""

from __future__ import annotations

from pathlib import Path

from cahp_edge.errors import ExportError

OPS_CONFIG = "required_operators.config"


def convert_to_ort(onnx_path: Path, out_dir: Path) -> Path:
    """Write ``<name>.ort`` and ``required_operators.config`` into ``out_dir``; return the .ort path."""
    import onnxruntime as ort

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    ort_path = out_dir / (onnx_path.stem + ".ort")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(ort_path)
    so.add_session_config_entry("session.save_model_format", "ORT")
    so.log_severity_level = 3
    try:
        ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"],
                             disabled_optimizers=["NchwcTransformer"])
        write_ops_config([ort_path], out_dir / OPS_CONFIG)
    except Exception as e:
        raise ExportError(f"conversion of {onnx_path.name} to ORT format failed",
                          f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}",
                          "remove \"ort\" from the target's formats, or report the model") from e
    return ort_path


def write_ops_config(ort_models: list[Path], config_path: Path) -> Path:
    import logging

    from onnxruntime.tools.ort_format_model.utils import create_config_from_models

    old = logging.root.manager.disable
    logging.disable(logging.INFO)  # the tool logs "Created config in ..." through the root logger
    try:
        create_config_from_models(list(ort_models), config_path, enable_type_reduction=False)
    finally:
        logging.disable(old)
    return config_path


def ops_in_config(config_path: Path) -> dict[str, set[str]]:
    """{domain: {op, ...}} from a reduced-build config (lines ``domain;opset;Op1,Op2``)."""
    ops: dict[str, set[str]] = {}
    for line in Path(config_path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        domain, _, names = line.split(";", 2)
        ops.setdefault(domain, set()).update(n.strip() for n in names.split(",") if n.strip())
    return ops
