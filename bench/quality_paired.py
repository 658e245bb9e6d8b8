"""python bench/quality_paired.py --model /work/minilm-sst5-ho --result q.json   (not run by CI)

Paired comparison of CAHP with the baselines on the same dev sentences, from a bench/quality.py result
JSON (its masks): per budget, sentences only CAHP gets right, sentences only the baseline gets right,
and the exact McNemar p-value (two-sided binomial test on the discordant pairs). Random: draw 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "data" / "sst5" / "dev.txt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--result", required=True, help="bench/quality.py --out JSON")
    ap.add_argument("--dev", default=str(DEV))
    ap.add_argument("--heads", default="24,18,9")
    ap.add_argument("--against", default="michel,oneshot,uniform")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from cahp_edge.data import align_labels, load_dataset
    from cahp_edge.model.load import load_model
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.compare import mcnemar
    from cahp_edge.prune.salience import masked_outcomes

    res = json.loads(Path(a.result).read_text())
    lm = load_model(a.model, require_classifier=True)
    dev = align_labels(load_dataset(a.dev), lm.model.config.id2label)
    batches = from_dataset(lm.tokenizer, dev, 128, 64)

    def correct(mask) -> torch.Tensor:  # (N,) bool, dev order
        return masked_outcomes(lm.model, lm.adapter, batches, torch.tensor(mask, dtype=torch.float32))[0]

    rows = {(r["method"], r["heads"]): r for r in res["rows"] if r["draw"] in (None, 0)}
    for k in [int(h) for h in a.heads.split(",")]:
        c = correct(rows[("cahp", k)]["mask"])
        for m in [x for x in a.against.split(",") if (x, k) in rows]:
            o = correct(rows[(m, k)]["mask"])
            t = mcnemar(c, o)
            only_c, only_o, p = t["only_reference"], t["only_this"], t["mcnemar_p"]
            print(
                f"{k} heads: cahp {int(c.sum())} vs {m} {int(o.sum())} of {len(c)}; "
                f"cahp-only {only_c}, {m}-only {only_o}, McNemar exact p = {p:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
