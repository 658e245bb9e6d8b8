"""Dynamic int8 in QDQ form, for runtimes that prefer QDQ graphs (XNNPACK, NNAPI, QNN front ends).

ORT's ``quantize_dynamic`` only writes QOperator ops (MatMulInteger, DynamicQuantizeMatMul). Here
each MatMul with a constant weight becomes::

    x -> DynamicQuantizeLinear -> DequantizeLinear --\
                                                      MatMul -> y
    W(int8, per column or per tensor) -> DequantizeLinear --/

which ORT's QDQ transformer turns back into an integer kernel (MatMulIntegerToFloat) when the
session is created; other runtimes see a standard QDQ graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def quantize_dynamic_qdq(src: Path, dst: Path, recipe, exclude: list[str]) -> int:
    import onnx
    from onnx import helper, numpy_helper

    from cahp_edge.deploy.graph import quantizable_nodes
    from cahp_edge.deploy.optimize import save_onnx

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    targets = set(quantizable_nodes(model, ["MatMul"])) - set(exclude)
    qmax = 63 if recipe.reduce_range else 127  # symmetric int8 weights; 7 bits with reduce_range
    signed = recipe.weight_type == "int8"
    new_nodes, act_cache, count = [], {}, 0
    for node in g.node:
        if node.op_type != "MatMul" or node.name not in targets:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)  # (K, N)
        amax = np.abs(w).max(axis=0) if recipe.per_channel else np.array(np.abs(w).max())
        scale = np.maximum(amax / qmax, 1e-12).astype(np.float32)
        q = np.clip(np.round(w / scale), -qmax, qmax)
        if signed:
            wq, zp = q.astype(np.int8), np.zeros_like(scale, dtype=np.int8)
        else:  # uint8 weights: shift by 128 (zero point 128)
            wq, zp = (q + 128).astype(np.uint8), np.full(scale.shape, 128, dtype=np.uint8)
        base = node.name.strip("/").replace("/", "_") or f"mm{count}"
        names = [f"{base}_wq", f"{base}_ws", f"{base}_wzp"]
        for n, arr in zip(names, (wq, scale, zp), strict=True):
            g.initializer.append(numpy_helper.from_array(arr, n))
        w_deq = f"{base}_w_deq"
        attrs = {"axis": 1} if recipe.per_channel else {}
        new_nodes.append(helper.make_node("DequantizeLinear", names, [w_deq], name=f"{base}_DQ_w", **attrs))
        x = node.input[0]
        if x not in act_cache:  # Q/K/V MatMuls of an unfused graph share one quantized input
            xb = f"{base}_x"
            xq = [f"{xb}_q", f"{xb}_s", f"{xb}_zp"]
            new_nodes.append(helper.make_node("DynamicQuantizeLinear", [x], xq, name=f"{base}_DQL_x"))
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{xb}_q", f"{xb}_s", f"{xb}_zp"],
                                              [f"{xb}_deq"], name=f"{base}_DQ_x"))
            act_cache[x] = f"{xb}_deq"
        new_nodes.append(helper.make_node("MatMul", [act_cache[x], w_deq], list(node.output), name=node.name))
        count += 1
    # drop the fp32 weights no longer used
    used = {i for n in new_nodes for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.node[:]
    g.node.extend(new_nodes)
    save_onnx(model, dst)
    return count
