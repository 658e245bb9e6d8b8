"""python bench/quality.py --model /work/minilm-sst5 --out /tmp/quality.json   (not run by CI)

Head-selection quality on SST-5: every method at 50%, 33%, 25%, 12.5% of heads and at CAHP's own
knee; SST-5 dev accuracy with heads masked (no recovery) and, where cahp_edge.train.recover exists and
--recover-epochs > 0, after one recovery fine-tune of the reshaped model. Calibration (512) and the
knee's selection split (1000) are disjoint stratified subsets of SST-5 *train*; dev is only reported.
Selection time = signatures + distances + clustering + salience (the sweep's evaluations excluded).
Prints a markdown report (bench/records/quality.md is written from it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sst5"
BASELINES = ("michel", "oneshot", "magnitude", "random", "uniform")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/work/minilm-sst5")
    ap.add_argument("--train", default=str(DATA / "train.txt"))
    ap.add_argument("--dev", default=str(DATA / "dev.txt"))
    ap.add_argument("--calib-size", type=int, default=512)
    ap.add_argument("--select-size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--degree", type=int, default=3)
    ap.add_argument("--clustering", default="spectral")
    ap.add_argument("--random-draws", type=int, default=3)
    ap.add_argument("--recover-epochs", type=float, default=0.0)
    ap.add_argument("--recover-methods", default="cahp,michel", help="methods; dense = recipe control")
    ap.add_argument("--recover-seed", type=int, default=None, help="recovery seed (default: --seed)")
    ap.add_argument("--recover-heads", default="", help="e.g. knee,24,9 (default: knee)")
    ap.add_argument("--recover-train", default=None, help="recovery training data (default: --train)")
    ap.add_argument("--out", default="/tmp/cahp-quality.json")
    ap.add_argument("--methods", default=",".join(BASELINES), help="baselines to run (CAHP always runs)")
    ap.add_argument("--k-star", type=int, default=None, help="skip CAHP and use this knee (split runs)")
    ap.add_argument("--merge", nargs="*", default=None, help="merge result JSONs of split runs and report")
    a = ap.parse_args()
    if a.merge:
        print(report(merge([json.loads(Path(f).read_text()) for f in a.merge])))
        return
    torch.set_num_threads(a.threads)

    from cahp_edge.data import align_labels, load_dataset, make_splits
    from cahp_edge.model.load import load_model
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.salience import masked_eval
    from cahp_edge.prune.select import PruneOptions, make_selector
    from cahp_edge.prune.sweep import SelectionData

    lm = load_model(a.model, require_classifier=True)
    m, ad = lm.model, lm.adapter
    id2label = m.config.id2label
    train = align_labels(load_dataset(a.train), id2label)
    dev = align_labels(load_dataset(a.dev), id2label)
    sp = make_splits(train, dev, calib_size=a.calib_size, select_size=a.select_size, seed=a.seed)
    data = SelectionData(
        from_dataset(lm.tokenizer, sp.calib, 128, 32), from_dataset(lm.tokenizer, sp.select, 128, 64)
    )
    dev_b = from_dataset(lm.tokenizer, dev, 128, 64)
    n = sum(lm.heads_per_layer)
    budgets = sorted({round(n * r) for r in (0.5, 1 / 3, 0.25, 0.125)}, reverse=True)
    res: dict = {
        "model": str(lm.path),
        "heads": n,
        "budgets": budgets,
        "sources": sp.sources,
        "threads": a.threads,
        "cpu_count": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
    }
    res["dense"] = {"select": masked_eval(m, ad, data.select)[0], "dev": masked_eval(m, ad, dev_b)[0]}
    print(f"dense: select {100 * res['dense']['select']:.1f} dev {100 * res['dense']['dev']:.1f}", flush=True)

    if a.k_star is None:
        k_star, cmasks, t_cahp = run_cahp(a, m, ad, data, n, budgets, res)
    else:
        k_star, cmasks, t_cahp = a.k_star, None, 0.0
    ks = sorted(set(budgets) | ({k_star} if k_star else set()), reverse=True)  # --k-star 0: budgets only
    rows = []

    def record(method: str, masks: dict, seconds: float, draw: int | None = None) -> None:
        for k in ks:
            mk = masks[k]
            on_select = method in ("cahp", "michel")  # the other baselines: dev only (time)
            rows.append(
                {
                    "method": method,
                    "heads": k,
                    "draw": draw,
                    "seconds": seconds,
                    "select": masked_eval(m, ad, data.select, mk)[0] if on_select else None,
                    "dev": masked_eval(m, ad, dev_b, mk)[0],
                    "per_layer": [int(x) for x in mk.sum(1)],
                    "mask": mk.tolist(),
                }
            )
        print(
            f"{method}: "
            + ", ".join(f"{r['heads']}:{100 * r['dev']:.1f}" for r in rows if r["method"] == method),
            flush=True,
        )

    if cmasks is not None:
        record("cahp", {k: cmasks[k] for k in ks}, t_cahp)
    for method in [x for x in a.methods.split(",") if x]:
        draws = range(a.random_draws) if method == "random" else [None]
        for d in draws:
            t0 = time.perf_counter()
            sel = make_selector(m, ad, data, PruneOptions(method=method, seed=a.seed + (d or 0)))
            masks = sel.masks(ks)
            record(method, masks, time.perf_counter() - t0, d)
    res["rows"] = rows
    if a.recover_epochs > 0:
        res["recovery"] = recover_rows(a, lm, rows, ks, k_star, sp, dev)
    res["load_avg_end"] = os.getloadavg()
    Path(a.out).write_text(json.dumps(res, indent=1, default=str))
    if "cahp" in res:
        print(report(res))


def run_cahp(a, m, ad, data, n, budgets, res):
    """One CAHP descent covers the sweep grid and the fixed budgets; knee on the selection split."""
    from cahp_edge.prune.knee import find_knee
    from cahp_edge.prune.salience import masked_eval
    from cahp_edge.prune.select import SELECTION_STAGES, PruneOptions, make_selector
    from cahp_edge.prune.sweep import default_grid

    grid = sorted(set(default_grid(n, max(1, n // 16), 14)) | set(budgets), reverse=True)
    t0 = time.perf_counter()
    cahp = make_selector(m, ad, data, PruneOptions(method="cahp", clustering=a.clustering, seed=a.seed))
    cmasks = cahp.masks(grid)
    t_cahp = time.perf_counter() - t0
    curve = [(k, 100 * masked_eval(m, ad, data.select, cmasks[k])[0]) for k in grid]
    knee = find_knee([k for k, _ in curve], [v for _, v in curve], a.degree)
    k_star = min(k for k in grid if k >= knee.k)
    tm = cahp.info["timings"]
    res["cahp"] = {
        "knee": knee.to_dict(),
        "k_star": k_star,
        "curve_select": curve,
        "descent_s": t_cahp,
        "timings": tm,
        "selection_s": sum(tm.get(k, 0.0) for k in SELECTION_STAGES),
        "selection_cpu_s": sum(tm.get(k.replace("_s", "_cpu_s"), 0.0) for k in SELECTION_STAGES),
        "options": {
            k: v for k, v in cahp.info.items() if k not in ("timings", "salience", "distance_summary")
        },
    }
    print(f"cahp: knee {knee.k} -> k* {k_star}; selection {res['cahp']['selection_s']:.1f}s {tm}", flush=True)
    return k_star, cmasks, t_cahp


def recover_rows(a, lm, rows, ks, k_star, sp, dev) -> list[dict]:
    """One recovery fine-tune (train split, logit distillation from the dense model) per method at k*."""
    try:
        from cahp_edge.train.recover import recover
    except ImportError:
        print("cahp_edge.train.recover is not available: recovery skipped", flush=True)
        return []
    from cahp_edge.data import load_dataset
    from cahp_edge.model.evaluate import evaluate_accuracy
    from cahp_edge.model.reshape import reshape
    from cahp_edge.plan import HeadPlan

    train = load_dataset(a.recover_train or a.train)
    out = []
    heads = [k_star if h == "knee" else int(h) for h in a.recover_heads.split(",") if h] or [k_star]
    for method, k in [(mt, k) for mt in a.recover_methods.split(",") for k in heads]:
        t0 = time.perf_counter()
        if method == "dense":  # control: the same recovery recipe on the unpruned model (all heads)
            if k != heads[0]:
                continue
            k, pruned = sum(lm.heads_per_layer), copy.deepcopy(lm.model)
        else:
            r = next(
                (r for r in rows if r["method"] == method and r["heads"] == k and r["draw"] in (None, 0)),
                None,
            )
            if r is None:
                continue
            pruned = reshape(lm.model, HeadPlan.from_mask(r["mask"]), lm.adapter)
        model, _res = recover(
            pruned,
            lm.tokenizer,
            train,
            epochs=a.recover_epochs,
            distill_from=lm.model,
            seed=a.seed if a.recover_seed is None else a.recover_seed,
        )
        acc = evaluate_accuracy(model, lm.tokenizer, dev)
        out.append(
            {
                "method": method,
                "heads": k,
                "dev_recovered": acc,
                "seconds": time.perf_counter() - t0,
                "epochs": a.recover_epochs,
                "seed": a.seed if a.recover_seed is None else a.recover_seed,
                "train": str(a.recover_train or a.train),
            }
        )
        print(f"recovered {method}@{k}: dev {100 * acc:.1f}", flush=True)
    return out


def merge(parts: list[dict]) -> dict:
    base = next(p for p in parts if "cahp" in p)
    out = dict(base)
    out["rows"] = [r for p in parts for r in p["rows"]]
    out["recovery"] = [r for p in parts for r in p.get("recovery") or []]
    out["load_avg_end"] = max((p.get("load_avg_end") for p in parts), key=lambda v: v[0])
    return out


def _rounded(d: dict) -> dict:
    return {k: round(v, 1) for k, v in d.items()}


def report(res: dict) -> str:
    ks = sorted({r["heads"] for r in res["rows"]}, reverse=True)
    k_star = res["cahp"]["k_star"]
    methods = ["cahp", *BASELINES]

    def cell(method: str, k: int, key: str) -> str:
        v = [r[key] for r in res["rows"] if r["method"] == method and r["heads"] == k and r[key] is not None]
        if not v:
            return "-"
        s = f"{100 * np.mean(v):.1f}"
        return s + (f" ±{100 * np.std(v):.1f}" if len(v) > 1 else "")

    head = "| method | " + " | ".join(f"{k}{' (knee)' if k == k_star else ''}" for k in ks) + " |"
    sep = "|---" * (len(ks) + 1) + "|"
    lines = [
        f"Dense: selection {100 * res['dense']['select']:.1f}%, dev {100 * res['dense']['dev']:.1f}% "
        f"({res['heads']} heads).",
        "",
        "SST-5 dev accuracy (%), heads masked, no recovery:",
        "",
        head,
        sep,
    ]
    lines += [f"| {mt} | " + " | ".join(cell(mt, k, "dev") for k in ks) + " |" for mt in methods]
    lines += ["", "Selection-split accuracy (%) (train subset; what the knee sees):", "", head, sep]
    lines += [
        f"| {mt} | " + " | ".join(cell(mt, k, "select") for k in ks) + " |" for mt in ("cahp", "michel")
    ]
    lines += ["", "Heads kept per layer (layer 1..L):", ""]
    for k in ks:
        for mt in ("cahp", "michel"):
            r = next((r for r in res["rows"] if r["method"] == mt and r["heads"] == k), None)
            if r is None:
                continue
            lines.append(f"- {mt} @ {k}: {r['per_layer']}")
    c = res["cahp"]
    lines += [
        "",
        f"CAHP knee: Kneedle on degree-{c['knee']['degree']} fit -> {c['knee']['k']} heads, "
        f"snapped to grid k* = {k_star}.",
        f"CAHP selection time: {c['selection_s']:.1f} s ({_rounded(c['timings'])}), "
        f"{res['threads']} threads, load average {res['load_avg_start']} at start.",
    ]
    if res.get("recovery"):
        lines += ["", "After recovery fine-tune (dev %):", ""]
        lines += [
            f"- {r['method']} @ {r['heads']}: {100 * r['dev_recovered']:.1f} ({r['seconds']:.0f} s)"
            for r in res["recovery"]
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
