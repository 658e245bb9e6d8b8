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

from tests.helpers.export_helpers import pruned_tiny

REPO = Path(__file__).resolve().parents[2]
SENTENCES = ["a b c d", "e f g", "h i j k l m n o", "p q", "b d f h j l n p r t", "z y x"]

SCRIPT = r"""
import json, sys
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline
folders, sentences = json.loads(sys.argv[1]), json.loads(sys.argv[2])
res = {}
for folder in folders:
    model = ORTModelForSequenceClassification.from_pretrained(folder, file_name="model.onnx")
    tok = AutoTokenizer.from_pretrained(folder)
    clf = pipeline("text-classification", model=model, tokenizer=tok)
    out = clf(sentences)
    enc = tok(sentences, padding=True, return_tensors="pt")
    logits = model(**enc).logits.detach().numpy().tolist()
    res[folder] = {"labels": [o["label"] for o in out], "logits": logits}
print(json.dumps(res))
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


@pytest.fixture(scope="module")
def compat_run(tmp_path_factory):
    """Export (fp32) and int8 folders of one tiny pruned model, both run once in the compat venv."""
    import torch

    from cahp_edge.deploy.export import export_onnx
    from cahp_edge.deploy.optimize import optimize_onnx
    from cahp_edge.deploy.quantize import quantize
    from tests.helpers.export_helpers import recipe_target

    py = compat_python()
    tmp = tmp_path_factory.mktemp("compat")
    model, _ = pruned_tiny("bert")
    with torch.no_grad():  # spread predictions over the labels so agreement is a real check
        model.classifier.weight.mul_(30)
    tok = _tiny_tokenizer(tmp, model.config.vocab_size)
    model.config.id2label = {0: "neg", 1: "mid", 2: "pos"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    fp32 = export_onnx(model, tmp / "e", tokenizer=tok, sentences=SENTENCES).path
    int8 = quantize(optimize_onnx(fp32, tmp / "o").path, recipe_target(), tmp / "q").path
    res = subprocess.run([py, "-c", SCRIPT, json.dumps([str(fp32), str(int8)]), json.dumps(SENTENCES)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return model, tok, {False: (fp32, out[str(fp32)]), True: (int8, out[str(int8)])}


@pytest.mark.parametrize("quantized", [False, True])
def test_optimum_loads_export_and_pipeline_agrees(compat_run, quantized):
    import torch

    model, tok, runs = compat_run
    folder, got = runs[quantized]
    enc = tok(SENTENCES, padding=True, return_tensors="np")
    names = ("input_ids", "attention_mask", "token_type_ids")
    if quantized:
        # the int8 graph is the reference: optimum must run it exactly as we do. Dynamic int8 scales
        # depend on the whole batch, and the pipeline feeds one unpadded sentence at a time, so the
        # labels are compared with one-sentence runs and the logits with the same padded batch
        from cahp_edge.deploy.export import ort_logits, session

        sess = session(folder / "model.onnx")
        ref = ort_logits(sess, [{k: enc[k].astype(np.int64) for k in names}])[0]
        one = [{k: v.astype(np.int64) for k, v in tok(s_, return_tensors="np").items() if k in names}
               for s_ in SENTENCES]
        ref_single = np.concatenate(ort_logits(sess, one))
    else:
        with torch.inference_mode():
            ref = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
        ref_single = ref
    want = [model.config.id2label[i] for i in ref_single.argmax(-1)]
    assert got["labels"] == want
    assert len(set(want)) > 1
    assert np.abs(np.asarray(got["logits"]) - ref).max() <= 1e-4
