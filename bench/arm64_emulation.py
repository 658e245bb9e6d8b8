"""python bench/arm64_emulation.py --model /work/minilm-sst5 [--limit N] [--cpus cortex-a72,cortex-a76]

ARM64 numerics of a MiniLM int8 model on SST-5 dev: the aarch64 ONNX Runtime under QEMU (pinned
cores) next to x86's, on the same int8 file. Needs CAHP_ARM64_ROOT (scripts/setup-arm64-emulation.sh).

Pipeline as `cahp-edge build` runs it: export (fp32, parity-checked) -> optimize (fused attention)
-> quantize with the rpi4-arm64 recipe (dynamic, per-channel u8/s8; rpi5-arm64 uses the same).
Writes JSON (one entry per CPU, appended as each finishes, so a long run keeps its partial
results) and prints a markdown table. Emulated times are host wall times, never device latency.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_sst5(path: Path, limit: int | None) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        lab, _, text = line.partition("\t") if "\t" in line else line.partition(" ")
        labels.append(int(lab.removeprefix("__label__")) - 1)  # 1..5 -> 0..4
        texts.append(text.strip())
    if limit:
        # a stratified-free but spread-out subset: every k-th sentence, so lengths stay representative
        step = max(1, len(texts) // limit)
        texts, labels = texts[::step][:limit], labels[::step][:limit]
    return texts, labels


def build_int8(model_dir: Path, work: Path, target: str) -> tuple[Path, Path]:
    from cahp_edge.deploy.export import export_onnx
    from cahp_edge.deploy.optimize import optimize_onnx
    from cahp_edge.deploy.quantize import quantize
    from cahp_edge.targets.profile import load_target

    exp, opt, q = work / "export", work / "optimize", work / f"int8-{target}"
    if not (q / "model.onnx").exists():
        export_onnx(str(model_dir), exp, overwrite=True)
        optimize_onnx(exp, opt, overwrite=True)
        quantize(opt, load_target(target), q, overwrite=True)
    return exp, q


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="fine-tuned classifier folder (HF)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/sst5/dev.txt")
    ap.add_argument("--limit", type=int, default=None, help="evaluate a spread-out subset of N sentences")
    ap.add_argument("--cpus", default="cortex-a72,cortex-a76")
    ap.add_argument("--target", default="rpi4-arm64", help="quantization recipe")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--work", type=Path, default=REPO / ".cahp-cache/bench-arm64")
    ap.add_argument("--out", type=Path, default=REPO / ".cahp-cache/bench-arm64/results.json")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from cahp_edge.runtime.tokenize import encode, load_tokenizer, pad_id_of
    from cahp_edge.targets.emulate import compare, run_emulated, run_host

    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    fp32_dir, q_dir = build_int8(a.model, a.work, a.target)
    print(f"built int8 model in {time.time() - t0:.0f} s: {q_dir}", flush=True)
    texts, labels = load_sst5(a.data, a.limit)
    tok = load_tokenizer(q_dir / "tokenizer.json", a.max_length)
    cfg = json.loads((q_dir / "config.json").read_text())
    pad = pad_id_of(tok, cfg.get("pad_token_id"))
    enc = encode(tok, texts, None, pad)
    ex = [{"input_ids": i, "attention_mask": [1] * len(i), "token_type_ids": t}
          for i, t in zip(enc.ids, enc.type_ids, strict=True)]
    kw = dict(batch_size=a.batch, threads=1, pad_id=pad)
    fp32 = run_host(fp32_dir / "model.onnx", ex, labels, **kw)
    host = run_host(q_dir / "model.onnx", ex, labels, **kw)
    import numpy as np

    def vs_fp32(run) -> dict:  # how far each int8 run is from the fp32 model: which kernels round better
        d = np.abs(run.logits.astype(np.float64) - fp32.logits)
        return {"max_abs_logit_diff": float(d.max()), "mean_abs_logit_diff": float(d.mean()),
                "argmax_agreement": float((run.predictions == fp32.predictions).mean())}

    np.save(a.work / f"logits-x86-fp32-n{len(ex)}.npy", fp32.logits)
    np.save(a.work / f"logits-x86-int8-n{len(ex)}.npy", host.logits)
    res = {"model": str(a.model), "data": str(a.data), "n": len(ex), "subset": a.limit,
           "mean_tokens": sum(map(len, enc.ids)) / len(ex), "recipe": a.target, "batch": a.batch,
           "onnxruntime": host.ort_version, "x86_fp32_accuracy": fp32.accuracy,
           "x86_int8": host.to_dict(), "x86_int8_vs_fp32": vs_fp32(host), "arm": []}
    print(f"x86: fp32 {fp32.accuracy:.4f}, int8 {host.accuracy:.4f} ({host.wall_s:.1f} s)", flush=True)
    for cpu in a.cpus.split(","):
        arm = run_emulated(q_dir / "model.onnx", ex, labels, cpu=cpu, timeout=4 * 3600, **kw)
        np.save(a.work / f"logits-{cpu}-int8-n{len(ex)}.npy", arm.logits)
        c = compare(host, arm).to_dict()
        c.pop("host")
        c["vs_fp32"] = vs_fp32(arm)
        res["arm"].append(c)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2))
        print(f"{cpu}: accuracy {arm.accuracy:.4f}, max|dlogit| {c['max_abs_logit_diff']:.4f}, "
              f"flips {c['flips']}/{len(ex)}, emulated wall {arm.wall_s:.0f} s", flush=True)
    a.out.write_text(json.dumps(res, indent=2))
    print("\n| run | accuracy | vs x86 int8: max abs logit diff, argmax flips | vs fp32: max abs logit diff,"
          " argmax agreement | wall time (s) |")
    print("|---|---|---|---|---|")
    print(f"| x86 fp32 | {fp32.accuracy:.4f} | | | {fp32.wall_s:.1f} |")
    v = res["x86_int8_vs_fp32"]
    print(f"| x86 int8 | {host.accuracy:.4f} | 0, 0 | {v['max_abs_logit_diff']:.3f}, "
          f"{v['argmax_agreement']:.3f} | {host.wall_s:.1f} |")
    for c in res["arm"]:
        v = c["vs_fp32"]
        print(f"| emulated {c['cpu']} int8 | {c['accuracy_arm']:.4f} | {c['max_abs_logit_diff']:.3f}, "
              f"{c['flips']} | {v['max_abs_logit_diff']:.3f}, {v['argmax_agreement']:.3f} | "
              f"{c['arm']['wall_s']:.0f} (emulated, not device latency) |")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
