"""python bench/quality_variants.py --variants '{"default": {}, "fisher": {"salience_kind": "fisher"}}'

CAHP variant comparison on a *training* selection split only (not run by CI). Calibration: the same
512 stratified SST-5 train sentences as bench/quality.py (seed 0); decision split: ``--select-size``
other stratified train sentences (default 2000, SE ~1.1 points). Each variant runs the full descent
over the prune grid plus the benchmark budgets (the same path as bench/quality.py) and reports
accuracy at 50/33/25/12.5% of heads, with its selection time. Dev is never read here: variants are
chosen on this split, dev is computed once for the chosen default by bench/quality.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sst5"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/work/minilm-sst5")
    ap.add_argument("--train", default=str(DATA / "train.txt"))
    ap.add_argument("--calib-size", type=int, default=512)
    ap.add_argument("--select-size", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", required=True, help='JSON {name: CAHP kwargs | {"method": "michel"}}')
    ap.add_argument("--out", default="/tmp/cahp-variants.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from cahp_edge.data import align_labels, load_dataset, make_splits
    from cahp_edge.model.load import load_model
    from cahp_edge.prune.baselines import BASELINES
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.cahp import CAHP
    from cahp_edge.prune.salience import masked_eval
    from cahp_edge.prune.signatures import collect
    from cahp_edge.prune.sweep import SelectionData, default_grid

    lm = load_model(a.model, require_classifier=True)
    m, ad = lm.model, lm.adapter
    train = align_labels(load_dataset(a.train), m.config.id2label)
    sp = make_splits(train, None, calib_size=a.calib_size, select_size=a.select_size, seed=a.seed)
    data = SelectionData(
        from_dataset(lm.tokenizer, sp.calib, 128, 32), from_dataset(lm.tokenizer, sp.select, 128, 64)
    )
    n = sum(lm.heads_per_layer)
    budgets = sorted({round(n * r) for r in (0.5, 1 / 3, 0.25, 0.125)}, reverse=True)
    grid = sorted(set(default_grid(n, max(1, n // 16), 14)) | set(budgets), reverse=True)
    dense = masked_eval(m, ad, data.select)[0]
    t0 = (time.perf_counter(), time.process_time())
    sig = collect(m, data.calib)
    sig_t = (time.perf_counter() - t0[0], time.process_time() - t0[1])
    res = {"sources": sp.sources, "dense_select": dense, "signatures_s": sig_t, "budgets": budgets}
    res["load_avg_start"] = os.getloadavg()
    print(f"dense select {100 * dense:.1f}; signatures {sig_t[0]:.1f}s wall {sig_t[1]:.1f}s cpu", flush=True)
    for name, kw in json.loads(a.variants).items():
        kw = dict(kw)
        method = kw.pop("method", "cahp")
        path = budgets if kw.pop("budgets_only", False) else grid  # baselines as bench/quality.py runs them
        if method == "cahp":
            # the variant study's base (gold-label salience, full calibration per round), pinned here so
            # the recorded variants reproduce now that CAHP's constructor defaults are the product's
            base = {"salience_weight": 1.0, "salience_labels": "gold", "round_fraction": 1.0}
            sel = CAHP(m, ad, data, a.seed, signatures=sig, **{**base, **kw})
        else:
            sel = BASELINES[method](m, ad, data, a.seed)
        masks = sel.masks(path)
        accs = {k: masked_eval(m, ad, data.select, masks[k])[0] for k in budgets}
        tm = sel.info["timings"]
        row = {
            "accuracy": accs,
            "per_layer": {k: [int(x) for x in masks[k].sum(1)] for k in budgets},
            "timings": tm,
            "rounds": sel.info.get("rounds"),
        }
        res[name] = row
        low = [100 * accs[k] for k in budgets if k <= round(n / 3)]
        print(
            f"{name}: "
            + " ".join(f"{k}:{100 * v:.1f}" for k, v in accs.items())
            + f" | mean<=33% {sum(low) / len(low):.2f} | rounds {row['rounds']} | "
            + " ".join(f"{k}={v:.1f}" for k, v in tm.items()),
            flush=True,
        )
        Path(a.out).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
