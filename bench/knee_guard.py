"""python bench/knee_guard.py --task sst5 --model /work/ft-sst5-s0 --out guard-sst5.json   (not run by CI)

Calibrates the knee's default accuracy guard (issue 14, docs/cahp.md "The knee's guard"): how much of a
selection-accuracy drop does the build's default recovery bring back? Held-out protocol as
bench/coverage_study.py: the model was fine-tuned on the task's ``finetune`` file; calibration rows come
from it (as `build --data finetune --select holdout` does) and the knee's selection rows are the held-out
file the model never saw. The default method (CAHP, product defaults) walks the default grid once; for
each guard value in --guards the guarded knee's count is reshaped and recovered with the build's default
recovery (RecoverOptions(): 1 epoch on the fine-tuning file, lr 3e-5, no distillation), seeds --seeds.
Accuracy before and after recovery is measured on the same held-out selection rows (used to choose the
guard) and on the dev/validation file (reported, never used to choose).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TASKS = {  # fine-tuning file, held-out selection file, evaluation file
    "sst5": ("/work/sst5-holdout/finetune.txt", "/work/sst5-holdout/holdout.txt",
             DATA / "sst5" / "dev.txt"),
    "sst2": ("/work/sst2-holdout/finetune.jsonl", "/work/sst2-holdout/holdout.jsonl",
             DATA / "sst2" / "dev.tsv"),
    "rte": ("/work/rte-holdout/finetune.jsonl", "/work/rte-holdout/holdout.jsonl",
            DATA / "rte" / "validation.parquet"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--guards", default="100,6,4,3,2,1", help="max-drop values (points); 100 = no guard")
    ap.add_argument("--seeds", default="0", help="recovery seeds")
    ap.add_argument("--counts", default="", help="recover these grid counts instead of the guarded knees'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from cahp_edge.data import align_labels, load_dataset, make_splits
    from cahp_edge.data.options import DataOptions
    from cahp_edge.model.load import load_model, save_pruned
    from cahp_edge.model.reshape import reshape
    from cahp_edge.plan import HeadPlan
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.knee import find_knee
    from cahp_edge.prune.options import PruneOptions
    from cahp_edge.prune.salience import masked_eval
    from cahp_edge.prune.select import make_selector
    from cahp_edge.prune.sweep import SelectionData, default_grid, run_sweep
    from cahp_edge.train.loop import TrainConfig
    from cahp_edge.train.options import RecoverOptions
    from cahp_edge.train.recover import recover_dir

    ft, hold, dev = TASKS[a.task]
    lm = load_model(a.model, require_classifier=True)
    m, ad, tok = lm.model, lm.adapter, lm.tokenizer
    labels = m.config.id2label
    train = align_labels(load_dataset(ft), labels)
    ev = align_labels(load_dataset(str(dev)), labels)
    do = DataOptions()  # the build's defaults: 512 calibration rows, <= 1000 selection rows, length 128
    sp = make_splits(train, ev, calib_size=do.calib_size, select_size=do.select_size, seed=do.seed,
                     select_ds=align_labels(load_dataset(hold), labels))
    data = SelectionData(from_dataset(tok, sp.calib, do.max_length, do.batch_size),
                         from_dataset(tok, sp.select, do.max_length, do.batch_size))
    dev_b = from_dataset(tok, ev, do.max_length, do.batch_size)
    po = PruneOptions(max_drop=100.0, rivals="none")  # the product's method and options, unguarded curve
    n = sum(lm.heads_per_layer)
    dense_sel, dense_loss = masked_eval(m, ad, data.select)
    dense_dev = masked_eval(m, ad, dev_b)[0]
    t0 = time.perf_counter()
    sw = run_sweep(make_selector(m, ad, data, po), m, ad, data.select,
                   default_grid(n, max(1, n // 16), po.grid_points), known={n: (dense_sel, dense_loss)})
    ks = [p.k for p in sw.points]
    accs = [100 * p.accuracy for p in sw.points]
    res = {"task": a.task, "model": a.model, "select_rows": len(sp.select), "dense_select": dense_sel,
           "dense_dev": dense_dev, "curve": dict(zip(ks, accs, strict=True)),
           "sweep_s": time.perf_counter() - t0,
           "coverage": [po.coverage_from, po.coverage_full], "knees": {}, "recovered": []}
    counts = {}
    for g in [float(x) for x in a.guards.split(",")]:
        kn = find_knee(ks, accs, po.degree, g)
        k = min(x for x in ks if x >= kn.k)
        counts[g] = k
        res["knees"][g] = {"kneedle": kn.k_kneedle, "k": k, "drop": 100 * dense_sel - accs[ks.index(k)]}
    print(json.dumps({"dense_select": dense_sel, "knees": res["knees"]}), flush=True)
    extra = {int(x) for x in a.counts.split(",") if x}
    todo = sorted(extra or {k for k in counts.values() if k < n}, reverse=True)
    for k in todo:
        mask = sw.masks[k]
        before_dev = masked_eval(m, ad, dev_b, mask)[0]
        for seed in [int(s) for s in a.seeds.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                plan = HeadPlan.from_mask(mask.tolist(), {"k_star": k})
                save_pruned(reshape(m, plan, ad), plan, Path(tmp) / "pruned", tok, lm.source_hash)
                ro = RecoverOptions()
                cfg = TrainConfig.from_options(DataOptions(seed=seed), ro, ro.recover_epochs, True)
                t1 = time.perf_counter()
                recover_dir(Path(tmp) / "pruned", train, Path(tmp) / "rec", cfg=cfg)
                rec = load_model(Path(tmp) / "rec")
                after_sel = masked_eval(rec.model, rec.adapter, data.select)[0]
                after_dev = masked_eval(rec.model, rec.adapter, dev_b)[0]
            row = {"heads": k, "seed": seed,
                   "drop_before": 100 * (dense_sel - sw.points[ks.index(k)].accuracy),
                   "drop_after": 100 * (dense_sel - after_sel), "dev_before": before_dev,
                   "dev_after": after_dev, "dev_drop_after": 100 * (dense_dev - after_dev),
                   "recover_s": time.perf_counter() - t1}
            res["recovered"].append(row)
            print(json.dumps(row), flush=True)
            Path(a.out).write_text(json.dumps(res, indent=1))
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
