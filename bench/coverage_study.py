"""python bench/coverage_study.py --task sst5 --model /work/ft-sst5-s0 --out cov-sst5-s0.json  (not run by CI)

Budget-aware complementarity (issue 14): CAHP with several coverage schedules (``coverage_from``,
``coverage_full``, docs/cahp.md) next to Michel, one-shot importance and uniform-per-layer, at
50/33/25/12.5% of heads, no recovery. Held-out protocol: the model was fine-tuned on the task's
``finetune`` file (bench/holdout_split.py); calibration and the **decision split** are disjoint parts of
the held-out ``holdout`` file (training data the model never saw). The schedule is chosen on the
decision split only; the dev/validation file is scored in the same run for the report (paired McNemar
against every baseline, on the same examples), never used to choose.

    python bench/coverage_study.py --merge cov-*.json     # decision-split means per variant, dev tables
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TASKS = {  # holdout file (train split), evaluation file, calibration size
    "sst5": ("/work/sst5-holdout/holdout.txt", DATA / "sst5" / "dev.txt", 512),
    "sst2": ("/work/sst2-holdout/holdout.jsonl", DATA / "sst2" / "dev.tsv", 512),
    "rte": ("/work/rte-holdout/holdout.jsonl", DATA / "rte" / "validation.parquet", 200),
}
VARIANTS = {  # name: (coverage_from, coverage_full); "one-per-cluster" is CAHP before issue 14
    "one-per-cluster": (1.0, 1.0),
    "cov 0.75-0.125": (0.75, 0.125),
    "cov 0.5-0.125": (0.5, 0.125),
    "cov 0.375-0.125": (0.375, 0.125),  # skipped by default (--skip): ran on SST-5 and RTE s0 only
    "salience only": (0.0, 0.0),
    "default 0.125-0.0625": (0.125, 0.0625),  # the product default; == salience only down to 12.5%
}
BASELINES = ("michel", "oneshot", "uniform")


def task_data(task: str, model: str, seed: int):
    """(loaded model, SelectionData (calibration, decision split), dev batches, splits) of the held-out
    protocol for one task."""
    from cahp_edge.data import align_labels, load_dataset, make_splits
    from cahp_edge.model.load import load_model
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.sweep import SelectionData

    hold, dev, calib = TASKS[task]
    lm = load_model(model, require_classifier=True)
    ds = align_labels(load_dataset(hold), lm.model.config.id2label)
    sp = make_splits(ds, ds, calib_size=calib, select_size=len(ds) - calib, seed=seed)
    data = SelectionData(from_dataset(lm.tokenizer, sp.calib, 128, 32),
                         from_dataset(lm.tokenizer, sp.select, 128, 64))
    ev = from_dataset(lm.tokenizer, align_labels(load_dataset(str(dev)), lm.model.config.id2label), 128, 64)
    return lm, data, ev, sp


def run(a) -> None:
    torch.set_num_threads(a.threads)
    from cahp_edge.prune.cahp import CAHP
    from cahp_edge.prune.options import PruneOptions
    from cahp_edge.prune.salience import accuracy_of, masked_eval, masked_outcomes
    from cahp_edge.prune.select import make_selector
    from cahp_edge.prune.signatures import collect

    lm, data, ev, sp = task_data(a.task, a.model, a.seed)
    m, ad = lm.model, lm.adapter
    n = sum(lm.heads_per_layer)
    ratios = [float(eval(x)) for x in a.ratios.split(",")]  # "1/3" allowed: --ratios is typed by us
    budgets = sorted({round(n * r) for r in ratios}, reverse=True)
    res = {"task": a.task, "model": a.model, "budgets": budgets, "calib": len(sp.calib),
           "decision": len(sp.select),
           "dense_decision": masked_eval(m, ad, data.select)[0], "dense_dev": masked_eval(m, ad, ev)[0],
           "load_avg_start": os.getloadavg(), "rows": {}}
    sig = collect(m, data.calib)
    correct: dict = {}
    names = [*VARIANTS, *BASELINES] if not a.only else a.only.split(",")
    names = [x for x in names if x not in a.skip.split(",")]
    for name in names:
        t0 = time.perf_counter()
        if name in VARIANTS:
            o = PruneOptions(method="cahp", coverage_from=VARIANTS[name][0], coverage_full=VARIANTS[name][1])
            sel = CAHP(m, ad, data, a.seed, signatures=sig, **o.method_options())
        else:
            sel = make_selector(m, ad, data, PruneOptions(method=name))
        masks = sel.masks(budgets)
        row = {"selection_s": time.perf_counter() - t0}
        for k in budgets:
            dec_c, _ = masked_outcomes(m, ad, data.select, masks[k])
            dev_c, _ = masked_outcomes(m, ad, ev, masks[k])
            correct[(name, k)] = (dec_c, dev_c)
            row[k] = {"decision": accuracy_of(dec_c), "dev": accuracy_of(dev_c),
                      "per_layer": [int(x) for x in masks[k].sum(1)],
                      "dec_correct": "".join(map(str, dec_c.int().tolist())),
                      "dev_correct": "".join(map(str, dev_c.int().tolist()))}
        res["rows"][name] = row
        print(f"{a.task} {name}: " + " ".join(
            f"{k}:{100 * row[k]['decision']:.1f}/{100 * row[k]['dev']:.1f}" for k in budgets)
            + f" ({row['selection_s']:.0f}s)", flush=True)
        Path(a.out).write_text(json.dumps(res, default=str))


def _bits(v):
    """Per-example correctness as stored: a list of 0/1 or a '0101...' string (bench/results/)."""
    import numpy as np

    return np.array([c == "1" for c in v] if isinstance(v, str) else v, bool)


def merge(files: list[str], chosen: str) -> None:
    import numpy as np
    from scipy.stats import binomtest

    runs = [json.loads(Path(f).read_text()) for f in files]
    names = [x for x in runs[0]["rows"] if all(x in r["rows"] for r in runs)]
    budgets = runs[0]["budgets"]
    print("decision split (held-out train rows): accuracy minus the best baseline at each budget, points;"
          " mean over runs")
    print(f"{'variant':<18}" + "".join(f"{k:>8}" for k in budgets) + "    mean   worst")
    for name in names:
        gaps = []
        for k in budgets:
            g = [100 * (r["rows"][name][str(k)]["decision"]
                        - max(r["rows"][b][str(k)]["decision"] for b in BASELINES if b in r["rows"]))
                 for r in runs]
            gaps.append(g)
        means = [float(np.mean(g)) for g in gaps]
        print(f"{name:<18}" + "".join(f"{v:>8.2f}" for v in means)
              + f"{np.mean(means):>8.2f}{min(min(g) for g in gaps):>8.2f}")
    print("\nper run, decision split accuracy (%)")
    for r in runs:
        print(f"{r['task']} {r['model']} (dense {100 * r['dense_decision']:.1f}%, {r['decision']} rows): "
              + "; ".join(f"{x} " + "/".join(f"{100 * r['rows'][x][str(k)]['decision']:.1f}" for k in budgets)
                          for x in names))
    print(f"\ndev / validation, {chosen} vs each baseline (exact McNemar p, only-{chosen}/only-baseline)")
    for r in runs:
        print(f"\n{r['task']} {r['model']} (dense dev {100 * r['dense_dev']:.1f}%)")
        print(f"{'method':<18}" + "".join(f"{k:>22}" for k in budgets))
        for name in dict.fromkeys([chosen, "one-per-cluster", *BASELINES]):
            if name not in r["rows"]:
                continue
            cells = []
            for k in budgets:
                row = r["rows"][name][str(k)]
                cell = f"{100 * row['dev']:.1f}"
                if name in BASELINES:
                    a_, b_ = _bits(r["rows"][chosen][str(k)]["dev_correct"]), _bits(row["dev_correct"])
                    x, y = int((a_ & ~b_).sum()), int((~a_ & b_).sum())
                    p = binomtest(x, x + y).pvalue if x + y else 1.0
                    cell += f" p={p:.2f} {x}/{y}"
                cells.append(f"{cell:>22}")
            print(f"{name:<18}" + "".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(TASKS))
    ap.add_argument("--model")
    ap.add_argument("--out")
    ap.add_argument("--only", default="", help="comma-separated variant/baseline names")
    ap.add_argument("--skip", default="cov 0.375-0.125",  # time: run on SST-5 and the first RTE model
                    help="comma-separated variant/baseline names to leave out")
    ap.add_argument("--ratios", default="0.5,1/3,0.25,0.125", help="kept shares of heads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--merge", nargs="*")
    ap.add_argument("--chosen", default="cov 0.5-0.125")
    a = ap.parse_args()
    if a.merge:
        merge(a.merge, a.chosen)
    else:
        run(a)


if __name__ == "__main__":
    main()
