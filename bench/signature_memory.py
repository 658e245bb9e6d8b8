"""python bench/signature_memory.py --batches 1,2 [--threads 2]   (not run by CI)

Peak memory of the signature pass (cahp_edge.prune.signatures.collect) on a BERT-large-shaped model
(24 layers x 16 heads = 384 heads, hidden 1024, random weights: memory does not depend on them) with
full-length batches (seq 128, every token real: the worst case) of ``--batch-size`` examples. Each
count of batches runs in a fresh subprocess and reports its peak RSS (ru_maxrss), so the numbers show
whether memory grows with the number of calibration examples (it must not: each batch's attention
maps are reduced to pairwise JSD sums and dropped) and what one batch costs. 1024 examples at batch 32
= 32 batches; the per-batch peak is what has to fit in 8 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(n_batches: int, batch_size: int, seq: int, threads: int) -> dict:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from cahp_edge.prune.batches import Batches
    from cahp_edge.prune.signatures import collect

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                     num_labels=5, attn_implementation="eager")
    model = BertForSequenceClassification(cfg).eval()
    after_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    g = torch.Generator().manual_seed(1)
    items = [
        {
            "input_ids": torch.randint(1000, cfg.vocab_size, (batch_size, seq), generator=g),
            "attention_mask": torch.ones(batch_size, seq, dtype=torch.long),
            "token_type_ids": torch.zeros(batch_size, seq, dtype=torch.long),
            "labels": torch.zeros(batch_size, dtype=torch.long),
        }
        for _ in range(n_batches)
    ]
    t0 = time.perf_counter()
    sig = collect(model, Batches(items))
    return {
        "batches": n_batches,
        "examples": sig.examples,
        "heads": sum(sig.heads_per_layer),
        "rows": sig.rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_after_model_mb": round(after_model),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(child(a.child, a.batch_size, a.seq, a.threads)))
        return
    rows = []
    for n in [int(x) for x in a.batches.split(",")]:
        cmd = [sys.executable, __file__, "--child", str(n), "--batch-size", str(a.batch_size),
               "--seq", str(a.seq), "--threads", str(a.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| batches x examples | heads | real query rows | wall s | RSS after model MB | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batches']} x {a.batch_size} | {r['heads']} | {r['rows']} | {r['seconds']} | "
              f"{r['peak_rss_after_model_mb']} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
