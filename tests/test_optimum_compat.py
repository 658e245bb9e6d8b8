"""The exported folder loads in optimum-onnx's ORTModelForSequenceClassification and a transformers
pipeline (transformers 4.57 compat venv, since optimum-onnx does not support transformers 5 yet) and
predicts what PyTorch predicts. The venv comes from .ci/setup-compat.sh, which writes
CAHP_COMPAT_PYTHON=... into .ci/env.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from export_helpers import pruned_tiny

REPO = Path(__file__).resolve().parents[1]
SENTENCES = ["a b c d", "e f g", "h i j k l m n o", "p q", "b d f h j l n p r t", "z y x"]

SCRIPT = r"""
import json, sys
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline
folder, file_name, sentences = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model = ORTModelForSequenceClassification.from_pretrained(folder, file_name=file_name)
tok = AutoTokenizer.from_pretrained(folder)
clf = pipeline("text-classification", model=model, tokenizer=tok)
out = clf(sentences)
enc = tok(sentences, padding=True, return_tensors="pt")
logits = model(**enc).logits.detach().numpy().tolist()
print(json.dumps({"labels": [o["label"] for o in out], "logits": logits}))
"""


def compat_python() -> str:
    py = os.environ.get("CAHP_COMPAT_PYTHON")
    env = REPO / ".ci" / "env"
    if not py and env.is_file():
        for line in env.read_text().splitlines():
            if line.startswith("CAHP_COMPAT_PYTHON="):
                py = line.split("=", 1)[1].strip()
    if not py or not Path(py).exists():
        pytest.skip("CAHP_COMPAT_PYTHON is not set (run .ci/setup-compat.sh: a transformers 4.57 + "
                    "optimum-onnx venv; optimum-onnx does not support transformers 5)")
    probe = subprocess.run([py, "-c", "import optimum.onnxruntime, transformers"], capture_output=True,
                           text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"{py} cannot import optimum.onnxruntime (re-run .ci/setup-compat.sh): "
                    f"{(probe.stderr.strip().splitlines() or [''])[-1]}")
    return py


def _tiny_tokenizer(tmp: Path, vocab_size: int):
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(ord("a") + i) for i in range(26)]
    words += [f"w{i}" for i in range(vocab_size - len(words))]
    (tmp / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizerFast(vocab_file=str(tmp / "vocab.txt"))


@pytest.mark.parametrize("quantized", [False, True])
def test_optimum_loads_export_and_pipeline_agrees(tmp_path, quantized):
    import torch

    from cahp_edge.export import export_onnx
    from cahp_edge.optimize import optimize_onnx

    py = compat_python()
    model, _ = pruned_tiny("bert")
    with torch.no_grad():  # spread predictions over the labels so agreement is a real check
        model.classifier.weight.mul_(30)
    tok = _tiny_tokenizer(tmp_path, model.config.vocab_size)
    model.config.id2label = {0: "neg", 1: "mid", 2: "pos"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    folder = export_onnx(model, tmp_path / "e", tokenizer=tok, sentences=SENTENCES).path
    if quantized:
        from export_helpers import recipe_target

        from cahp_edge.quantize import quantize

        folder = quantize(optimize_onnx(folder, tmp_path / "o").path, recipe_target(), tmp_path / "q").path
    res = subprocess.run([py, "-c", SCRIPT, str(folder), "model.onnx", json.dumps(SENTENCES)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    enc = tok(SENTENCES, padding=True, return_tensors="np")
    if quantized:  # the int8 graph is the reference: optimum must run it exactly as we do
        from cahp_edge.export import ort_logits, session

        batch = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        ref = ort_logits(session(folder / "model.onnx"), [batch])[0]
    else:
        with torch.inference_mode():
            ref = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
    want = [model.config.id2label[i] for i in ref.argmax(-1)]
    assert got["labels"] == want
    assert len(set(want)) > 1
    assert np.abs(np.asarray(got["logits"]) - ref).max() <= 1e-4
