"""python3 cahp_edge/targets/emulate_worker.py WORK_DIR

Runs pre-padded batches through one ONNX Runtime session and writes the logits. The same file runs
under the host's Python (x86 reference) and under the emulated aarch64 Python, so the two runs
differ only in ORT's kernels. It imports only numpy and onnxruntime (the emulated userland has
nothing else) and is run by path, never imported.

WORK_DIR/job.json     {"model": path, "threads": int, "opt_level": "all"|"extended"|"basic"|"disabled",
                       "batches": n}
WORK_DIR/batches.npz  b{i}.{input name} -> (B_i, T_i) integer arrays, padded per batch
WORK_DIR/logits.npy   (N, C) float32 in batch order (written here)
WORK_DIR/result.json  {"ort_version", "machine", "providers", "load_s", "run_s"} (written here)
"""

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

_OPT = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


# Linux arm64 HWCAP bits (asm/hwcap.h) for the features that change ORT's kernel choice
_HWCAP = {0: "fp", 1: "asimd", 8: "atomics", 9: "fphp", 10: "asimdhp", 20: "asimddp", 22: "sve"}
_HWCAP2 = {1: "sve2", 13: "i8mm", 14: "bf16", 23: "sme"}


def _arm_features() -> list:
    """ISA features from AT_HWCAP/AT_HWCAP2, which ORT itself reads; asimddp = dot product. [] on x86.

    Not /proc/cpuinfo: qemu 7.2 shows the host's (or a fake) one, while HWCAP follows ``-cpu``.
    """
    if platform.machine() != "aarch64":
        return []
    import ctypes

    getauxval = ctypes.CDLL(None).getauxval
    getauxval.restype = ctypes.c_ulong
    hw, hw2 = getauxval(16), getauxval(26)  # AT_HWCAP, AT_HWCAP2
    return [n for b, n in _HWCAP.items() if hw >> b & 1] + [n for b, n in _HWCAP2.items() if hw2 >> b & 1]


def main(work: Path) -> None:
    job = json.loads((work / "job.json").read_text())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(job["threads"])
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = _OPT[job["opt_level"]]
    t0 = time.perf_counter()
    sess = ort.InferenceSession(job["model"], opts, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    inputs = sess.get_inputs()
    data = np.load(work / "batches.npz")
    outs, run_s = [], 0.0
    for i in range(int(job["batches"])):
        ids = data[f"b{i}.input_ids"]
        feed = {}
        for inp in inputs:
            key = f"b{i}.{inp.name}"
            # a model exported with token_type_ids gets zeros when the caller has none (single sentences)
            arr = data[key] if key in data.files else np.zeros_like(ids)
            feed[inp.name] = arr.astype(_DTYPES.get(inp.type, np.int64))
        t0 = time.perf_counter()
        logits = sess.run(None, feed)[0]  # (B, C)
        run_s += time.perf_counter() - t0
        outs.append(np.asarray(logits, dtype=np.float32))
    np.save(work / "logits.npy", np.concatenate(outs, axis=0))
    result = {
        "ort_version": ort.__version__,
        "machine": platform.machine(),
        "providers": sess.get_providers(),
        "load_s": load_s,
        "run_s": run_s,
        "cpu_features": _arm_features(),
    }
    (work / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
