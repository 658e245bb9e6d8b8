"""Run this release on text. Needs only onnxruntime, numpy and tokenizers (no torch, no cahp-edge).

    python run.py "a gripping, funny film"                  # one text
    python run.py "A man is sleeping." "A person rests."    # a sentence pair (pair tasks)
    python run.py --file inputs.jsonl                       # {"text": ..., "text_pair": ...} per line

Prints one JSON object per input, by the task in config.json (``cahp_task``):
classifiers {"label": ..., "score": ..., "scores": {label: probability}}; embedding models
{"embedding": [...]} (pooled and normalised inside the graph); token classifiers {"entities": [{"entity",
"start", "end", "text", "score"}]} with character offsets into the text.
Import it to use it from your own code: ``from run import Classifier; Classifier(".")(["text"])``.

It reads the settings the release was measured with (target.json: threads, execution providers,
disabled graph rewrites, sequence length) and batches like the accuracy in metrics.json: rows sorted
by length, batches of 16, each padded to its own longest row. (int8 models take one activation scale
per batch, so other batchings change the logits slightly.) This file is copied into every release by
cahp-edge; the release's SHA256SUMS lists it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
BATCH = 16
DEFAULT_SEQ_LEN = 128


class Classifier:
    def __init__(self, root: str | Path = HERE) -> None:
        root = Path(root)
        config = json.loads((root / "config.json").read_text(encoding="utf-8"))
        target_file = root / "target.json"
        target = json.loads(target_file.read_text(encoding="utf-8")) if target_file.is_file() else {}
        self.task = config.get("cahp_task", "sequence-classification")
        self.id2label = {int(k): v for k, v in (config.get("id2label") or {}).items()}
        seq_len = int((target.get("benchmark") or {}).get("seq_len", DEFAULT_SEQ_LEN))
        seq_len = min(seq_len, int(config.get("max_position_embeddings", seq_len)))
        self.tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tok.no_padding()  # padded per batch below
        self.tok.enable_truncation(max_length=seq_len)
        pad = config.get("pad_token_id")
        known = [self.tok.token_to_id(t) for t in ("[PAD]", "<pad>", "<|pad|>")]
        self.pad_id = int(pad) if pad is not None else next((i for i in known if i is not None), 0)

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(target.get("threads", 0))  # 0 = ONNX Runtime's default
        wanted = target.get("execution_providers") or ["CPUExecutionProvider"]
        providers = [p for p in wanted if p in ort.get_available_providers()] or ["CPUExecutionProvider"]
        disabled = target.get("disabled_optimizers") or []
        extra = {"disabled_optimizers": disabled} if disabled else {}
        model = root / "model.onnx" if (root / "model.onnx").is_file() else root / "model.ort"
        self.sess = ort.InferenceSession(str(model), so, providers=providers, **extra)
        self.inputs = [i.name for i in self.sess.get_inputs()]

    def logits(self, texts: list[str], pairs: list[str] | None = None, enc=None) -> list[np.ndarray]:
        """The graph's output per input, in input order: (L,) logits, (D,) embedding, or (T, C) token
        logits (T = that input's own tokens)."""
        if enc is None:
            enc = self.tok.encode_batch(list(zip(texts, pairs, strict=True)) if pairs is not None else texts)
        out: list = [None] * len(enc)
        order = sorted(range(len(enc)), key=lambda i: (len(enc[i].ids), i))
        for s in range(0, len(order), BATCH):
            idx = order[s : s + BATCH]
            t = max(len(enc[i].ids) for i in idx)
            feeds = {"input_ids": np.full((len(idx), t), self.pad_id, dtype=np.int64),  # (B, T)
                     "attention_mask": np.zeros((len(idx), t), dtype=np.int64),
                     "token_type_ids": np.zeros((len(idx), t), dtype=np.int64)}
            for row, i in enumerate(idx):
                n = len(enc[i].ids)
                feeds["input_ids"][row, :n] = enc[i].ids
                feeds["attention_mask"][row, :n] = 1
                feeds["token_type_ids"][row, :n] = enc[i].type_ids
            res = self.sess.run(None, {k: feeds[k] for k in self.inputs})[0]  # (B, L) | (B, D) | (B, T, C)
            for row, i in enumerate(idx):
                out[i] = res[row, : len(enc[i].ids)] if res.ndim == 3 else res[row]
        return out

    def __call__(self, texts: list[str], pairs: list[str] | None = None) -> list[dict]:
        if self.task == "sentence-embedding":
            return [{"embedding": [round(float(v), 6) for v in e]} for e in self.logits(texts, pairs)]
        if self.task == "token-classification":
            from cahp_edge_runtime.entities import decode_entities  # the runner copy in this release

            enc = self.tok.encode_batch(texts)
            names = [self.id2label[i] for i in range(len(self.id2label))]
            out = []
            for text, e, lg in zip(texts, enc, self.logits(texts, enc=enc), strict=True):
                p = np.exp(lg - lg.max(-1, keepdims=True))
                p /= p.sum(-1, keepdims=True)  # (T, C) softmax
                out.append({"entities": decode_entities(text, e.offsets, e.word_ids, names, p)})
            return out
        logits = np.stack(self.logits(texts, pairs))  # (N, L)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)  # (N, L) softmax
        return [{"label": self.id2label[int(p.argmax())], "score": round(float(p.max()), 6),
                 "scores": {self.id2label[j]: round(float(v), 6) for j, v in enumerate(p)}} for p in probs]


def _read(path: Path) -> tuple[list[str], list[str] | None]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["text"] for r in rows]
    pairs = [r["text_pair"] for r in rows] if rows and all("text_pair" in r for r in rows) else None
    return texts, pairs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Classify text with this release.")
    ap.add_argument("text", nargs="*", help="one text, or two for a sentence pair")
    ap.add_argument("--file", type=Path, help="JSON lines with text (and text_pair for pair tasks)")
    a = ap.parse_args(argv)
    if a.file is None and len(a.text) not in (1, 2):
        ap.error("give one text, a sentence pair, or --file FILE")
    texts, pairs = _read(a.file) if a.file else ([a.text[0]], a.text[1:] or None)
    for r in Classifier()(texts, pairs):
        print(json.dumps(r, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
