"""`python bench/embed_latency.py DENSE.onnx NAME=MODEL.onnx ... [--text conll]`: batch-1 latency.

For embedding models (STS-B sentences) and token classifiers (--text conll). Dense fp32 ONNX Runtime
is the baseline (the plain export of the dense model, default session); every other graph runs with the
x86-64-avx512-vnni profile's session settings, as a release does. Inputs: sequence 128 (every token
real) and real sentences at their own lengths, cycled: STS-B dev (each side of each pair) or CoNLL-2003
valid (words joined by spaces). 1 thread (or --threads N). Runs interleave in blocks across models so
machine noise hits all alike (bench/latency.py's measure); p50 over all timed runs; speedup = dense p50
/ model p50.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.latency import OURS_SESSION, measure  # noqa: E402


def real_sentences(kind: str, n: int) -> list[str]:
    data = REPO.parent / "shared" / "data"
    if kind == "conll":
        from cahp_edge.data.tagged import read_conll

        return [" ".join(w) for w in read_conll(data / "conll2003" / "valid.txt").words[:n]]
    from cahp_edge.data import load_dataset

    ds = load_dataset(data / "stsb" / "dev.tsv", "dev", scores=True)
    return [s for pair in zip(ds.texts, ds.pairs, strict=True) for s in pair][:n]


def batches(tok, kind: str, n: int, text: str = "stsb") -> list[dict[str, np.ndarray]]:
    if kind == "seq128":
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, tok.vocab_size, size=(n, 128))
        ids[:, 0], ids[:, -1] = tok.cls_token_id, tok.sep_token_id
        return [{"input_ids": r[None].astype(np.int64), "attention_mask": np.ones((1, 128), np.int64),
                 "token_type_ids": np.zeros((1, 128), np.int64)} for r in ids]
    enc = [tok(s, truncation=True, max_length=128, return_tensors="np") for s in real_sentences(text, n)]
    return [{k: np.asarray(v, dtype=np.int64) for k, v in e.items()} for e in enc]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dense")
    ap.add_argument("models", nargs="+", help="NAME=path/to/model.onnx")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--text", choices=("stsb", "conll"), default="stsb", help="real-length sentences")
    a = ap.parse_args()
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(Path(a.dense).parent))

    def session(path: str, ours: bool):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
        kw = OURS_SESSION if ours else {}
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"], **kw)
        names = {i.name for i in s.get_inputs()}
        first = s.get_outputs()[0].name
        return lambda b: s.run([first], {k: v for k, v in b.items() if k in names})

    fns = {"dense fp32 ORT": session(a.dense, False)}
    for spec in a.models:
        name, path = spec.split("=", 1)
        fns[name] = session(path, True)
    res = {}
    for kind in ("seq128", a.text):
        r = measure(fns, batches(tok, kind, 200, a.text), warmup=10, runs=a.runs, blocks=a.blocks)
        base = r["dense fp32 ORT"]["p50"]
        res[kind] = {k: {**v, "speedup": round(base / v["p50"], 3)} for k, v in r.items()}
        for k, v in res[kind].items():
            print(f"{kind:7s} {k:28s} p50 {v['p50']:8.3f} ms  x{v['speedup']:.2f}")
    if a.out:
        models = {"dense fp32 ORT": a.dense, **dict(s.split("=", 1) for s in a.models)}
        doc = {"threads": a.threads, "models": models, "results": res}
        a.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
