"""python bench/build.py [--model /work/minilm-sst5] [--target host] [--out /tmp/bench-build] [--json FILE]
python bench/build.py --model /work/rte-ft --data finetune.jsonl --select holdout.jsonl \
    --eval ../shared/data/rte/validation.parquet            # RTE (sentence pairs), held-out selection rows

Wall time of every `cahp-edge build` stage for a fine-tuned MiniLM on SST-5 (train for calibration,
selection and recovery; dev for evaluation), and peak memory: the build process's RSS sampled every
0.2 s (peak per stage) and the peak RSS of the runner subprocesses. Always a fresh build (--force).
Results: a markdown table on stdout (paste into bench/records/build.md) and JSON with --json.
Not run by CI: minutes of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SST5 = REPO.parent / "shared" / "data" / "sst5"


class Sampler:
    """Peak RSS of this process between stage events."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.2)

    def take(self) -> float:
        mb, self.peak = self.peak / 2**20, self.proc.memory_info().rss
        return mb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="/work/minilm-sst5")
    ap.add_argument("--data", default=str(SST5 / "train.txt"))
    ap.add_argument("--eval", default=str(SST5 / "dev.txt"))
    ap.add_argument("--select", default=None, help="held-out knee-selection rows (labelled or not)")
    ap.add_argument("--allow-weak-model", action="store_true")
    ap.add_argument("--target", action="append", default=None)
    ap.add_argument("--out", default="/tmp/bench-build")
    ap.add_argument("--calib-size", type=int, default=512)
    ap.add_argument("--select-size", type=int, default=1000)
    ap.add_argument("--recover-epochs", type=float, default=1.0)
    ap.add_argument("--grid-points", type=int, default=None)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    from cahp_edge.build.options import make_options
    from cahp_edge.build.pipeline import Events, build

    sampler = Sampler()
    rows: list[dict] = []

    class Record(Events):
        def stage(self, rec, line: str) -> None:
            rows.append({"stage": line.split(":")[0], "seconds": round(rec.seconds, 1), "cached": rec.hit,
                         "peak_rss_mb": round(sampler.take(), 0), "line": line})
            print(line, file=sys.stderr, flush=True)

    opts = make_options({"model": a.model, "data": a.data, "eval": a.eval, "targets": a.target or ["host"],
                         "out": a.out, "calib_size": a.calib_size, "select_size": a.select_size,
                         "recover_epochs": a.recover_epochs, "eval_limit": a.eval_limit,
                         "grid_points": a.grid_points, "select": a.select,
                         "allow_weak_model": a.allow_weak_model,
                         "benchmark": {"runs": a.runs}})
    t0 = time.perf_counter()
    res = build(opts, force=True, events=Record())
    wall = time.perf_counter() - t0
    sampler.stop.set()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB on Linux
    info = {"wall_s": round(wall, 1), "cpu": platform.processor() or platform.machine(),
            "cores": len(os.sched_getaffinity(0)), "load_avg_1m": os.getloadavg()[0],
            "peak_rss_build_mb": round(max((r["peak_rss_mb"] for r in rows), default=0), 0),
            "peak_rss_runner_mb": round(children, 0), "stages": rows, "budgets": res.verdicts}
    print("| stage | wall s | peak RSS MB (build process) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['seconds']} | {r['peak_rss_mb']:.0f} |")
    print(f"| **total** | **{wall:.0f}** | {info['peak_rss_build_mb']:.0f} "
          f"(runner subprocesses: {children:.0f}) |")
    if a.json:
        a.json.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
