"""Read-only facts about ONNX graphs that both quantizers and the quantize stage ask.

    quantizable_nodes(model, ["MatMul"])   # node names a recipe would quantize
    quantized_matmul_count(model)          # int8 matmuls after quantization (QOperator or QDQ)
"""

from __future__ import annotations

from pathlib import Path

INT_MATMUL_OPS = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul",
                  "QAttention", "QGemm"}
HEAD_WORDS = ("pooler", "classifier", "pre_classifier")


def quantizable_nodes(model, op_types) -> list[str]:
    """Names of nodes a recipe would quantize: its op types with a constant, non-empty weight (Gemm
    counts as MatMul). A zero-neuron FFN layer's projections have empty weights: nothing to quantize."""
    empty = set(empty_weight_nodes(model))
    inits = {i.name for i in model.graph.initializer}
    ops = set(op_types) | ({"Gemm"} if "MatMul" in op_types else set())
    return [n.name for n in model.graph.node
            if n.op_type in ops and len(n.input) > 1 and n.input[1] in inits and n.name
            and n.name not in empty]


def empty_weight_nodes(model) -> list[str]:
    """Nodes whose constant weight (input 1) has no elements: ORT's quantizers fail on them ("need at
    least one array to concatenate"), so every recipe leaves them in fp32 (they compute nothing)."""
    empty = {i.name for i in model.graph.initializer if 0 in i.dims}
    return [n.name for n in model.graph.node if len(n.input) > 1 and n.input[1] in empty and n.name]


def quantized_matmul_count(model) -> int:
    """Integer matmul-like ops (QOperator) plus float ops fed by a dequantized int8/uint8 weight (QDQ)."""
    from onnx import TensorProto

    int8 = (TensorProto.INT8, TensorProto.UINT8)
    int8_inits = {i.name for i in model.graph.initializer if i.data_type in int8}
    dq_of_weight = {n.output[0] for n in model.graph.node
                    if n.op_type == "DequantizeLinear" and n.input[0] in int8_inits}
    n = 0
    for node in model.graph.node:
        qdq = node.op_type in ("MatMul", "Gemm", "Attention") and len(node.input) > 1 \
            and node.input[1] in dq_of_weight
        n += int(node.op_type in INT_MATMUL_OPS or qdq)
    return n


def head_nodes(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return [n.name for n in m.graph.node if any(w in n.name.lower() for w in HEAD_WORDS)]
