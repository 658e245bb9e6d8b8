"""python bench/units_study.py --task sst5 --model /work/ft-sst5-s0 --out units-sst5-s0.json  (not run by CI)

Heads + FFN neurons (issue 15): joint CAHP, the Fisher mask search (Kwon et al.), uniform width, and
head-only CAHP at the same MAC speedups; each masked, then after the least-squares reconstruction
(`recover --recover-method reconstruct`). Held-out protocol as bench/coverage_study.py: the model never
saw the ``holdout`` file; calibration (Fisher, signatures, reconstruction) and the decision split are
disjoint parts of it; the dev file is scored for the report, never used to choose. Per-example
correctness is stored so every McNemar test can be recomputed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from coverage_study import TASKS, task_data  # same held-out files, calibration sizes and splits

METHODS = ("cahp", "fisher", "uniform", "cahp-heads")


def _bits(t: torch.Tensor) -> str:
    return "".join(map(str, t.int().tolist()))


def run(a) -> None:
    torch.set_num_threads(a.threads)
    from cahp_edge.model.reconstruct import reconstruct
    from cahp_edge.model.reshape import reshape
    from cahp_edge.prune.options import PruneOptions
    from cahp_edge.prune.salience import accuracy_of, masked_outcomes
    from cahp_edge.prune.select import select_heads
    from cahp_edge.prune.units import mean_length

    lm, data, ev, sp = task_data(a.task, a.model, a.seed)
    m, ad = lm.model, lm.adapter
    dense_dec, _ = masked_outcomes(m, ad, data.select)
    dense_dev, _ = masked_outcomes(m, ad, ev)
    res = {"task": a.task, "model": a.model, "calib": len(sp.calib), "decision": len(sp.select),
           "mean_length": mean_length(data.calib), "dense_decision": accuracy_of(dense_dec),
           "dense_dev": accuracy_of(dense_dev), "dense_dev_correct": _bits(dense_dev),
           "load_avg_start": os.getloadavg(), "rows": {}}
    speedups = [float(x) for x in a.speedups.split(",")]
    for name in a.methods.split(","):
        for s in speedups:
            t0 = time.perf_counter()
            units = "heads" if name.endswith("-heads") else "heads+neurons"
            try:
                plan = select_heads(m, ad, data, PruneOptions(method=name.removesuffix("-heads"), units=units,
                                                              speedup=s, rivals="none"))
            except Exception as e:  # head-only out of reach at large speedups
                print(f"{name} {s}: {e}", flush=True)
                continue
            t_sel = time.perf_counter() - t0
            pruned = reshape(m, plan, ad)
            with torch.no_grad():
                dec_m, _ = masked_outcomes(pruned, ad, data.select)
                dev_m, _ = masked_outcomes(pruned, ad, ev)
            t1 = time.perf_counter()
            reconstruct(pruned, m, ad, list(data.calib), damp=a.damp)
            t_rec = time.perf_counter() - t1
            dec_r, _ = masked_outcomes(pruned, ad, data.select)
            dev_r, _ = masked_outcomes(pruned, ad, ev)
            from cahp_edge.model.accounting import ideal_speedup, model_cost

            T = round(res["mean_length"])
            row = {"method": name, "speedup_target": s, "speedup_ideal_T": ideal_speedup(
                model_cost(m, T, ad), model_cost(pruned, T, ad)),
                "speedup_ideal_128": ideal_speedup(model_cost(m, 128, ad), model_cost(pruned, 128, ad)),
                "heads": plan.heads_per_layer, "neurons": plan.neurons_per_layer,
                "selection_s": t_sel, "reconstruct_s": t_rec,
                "decision_masked": accuracy_of(dec_m), "dev_masked": accuracy_of(dev_m),
                "decision_rec": accuracy_of(dec_r), "dev_rec": accuracy_of(dev_r),
                "dev_masked_correct": _bits(dev_m), "dev_rec_correct": _bits(dev_r),
                "dec_rec_correct": _bits(dec_r)}
            res["rows"][f"{name}@{s:g}"] = row
            print(f"{a.task} {name} x{s:g} (ideal {row['speedup_ideal_T']:.2f} at T={T}): "
                  f"heads {sum(row['heads'])} neurons {sum(row['neurons'] or [0])}; "
                  f"decision {100 * row['decision_masked']:.1f} -> "
                  f"{100 * row['decision_rec']:.1f}, dev {100 * row['dev_masked']:.1f} -> "
                  f"{100 * row['dev_rec']:.1f} (dense {100 * res['dense_dev']:.1f}); "
                  f"select {t_sel:.0f}s + reconstruct {t_rec:.0f}s", flush=True)
            Path(a.out).write_text(json.dumps(res, default=str))
            del pruned


def merge(files: list[str], reference: str = "fisher") -> None:
    """Per run: decision and dev accuracy after the re-fit, dev McNemar vs dense and vs ``reference`` at
    the same speedup (markdown, for bench/records/units.md)."""
    import numpy as np
    from scipy.stats import binomtest

    def bits(s):
        return np.array([c == "1" for c in s], bool)

    def p_value(a, b):
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        return binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0

    for f in files:
        d = json.loads(Path(f).read_text())
        dense = bits(d["dense_dev_correct"])
        print(f"\n{d['task']} {Path(d['model']).name}: dense decision {100 * d['dense_decision']:.1f}%, "
              f"dev {100 * d['dense_dev']:.1f}% ({len(dense)} rows), mean length {d['mean_length']:.1f}")
        print("| method | speedup (MACs, T) | heads | neurons | decision masked -> re-fit "
              f"| dev masked -> re-fit | dev vs dense (p) | dev vs {reference} (p) | select + re-fit s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in d["rows"].values():
            dev = bits(r["dev_rec_correct"])
            ref = d["rows"].get(f"{reference}@{r['speedup_target']:g}")
            vs = "" if ref is None or ref is r else (f"{100 * (r['dev_rec'] - ref['dev_rec']):+.1f} "
                                                     f"({p_value(dev, bits(ref['dev_rec_correct'])):.2f})")
            print(f"| {r['method']} | {r['speedup_ideal_T']:.2f} | {sum(r['heads'])} | "
                  f"{sum(r['neurons']) if r['neurons'] else 'all'} | "
                  f"{100 * r['decision_masked']:.1f} -> {100 * r['decision_rec']:.1f} | "
                  f"{100 * r['dev_masked']:.1f} -> {100 * r['dev_rec']:.1f} | "
                  f"{100 * (r['dev_rec'] - d['dense_dev']):+.1f} ({p_value(dev, dense):.2f}) | {vs} | "
                  f"{r['selection_s']:.0f} + {r['reconstruct_s']:.0f} |")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--merge"]:
        merge(sys.argv[2:])
        raise SystemExit(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=list(TASKS), required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--speedups", default="1.5,2,2.5,3,4")
    p.add_argument("--damp", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    run(p.parse_args())
