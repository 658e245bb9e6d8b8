"""An exported embedding folder loads in optimum-onnx's ORTModelForFeatureExtraction and in
sentence-transformers' ONNX backend (the transformers 4.57 compat venv from .ci/setup-compat.sh, with
sentence-transformers 5.1), and both give the graph's own ``sentence_embedding`` (issue 16)."""

from __future__ import annotations

import json
import subprocess

import numpy as np

from tests.deploy.test_optimum_compat import compat_python
from tests.tasks.test_embeddings import PAIRS, emb  # noqa: F401  (fixture)

SCRIPT = r"""
import json, sys
import numpy as np
from optimum.onnxruntime import ORTModelForFeatureExtraction
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer
folder, sentences = sys.argv[1], json.loads(sys.argv[2])
m = ORTModelForFeatureExtraction.from_pretrained(folder, file_name="model.onnx")
tok = AutoTokenizer.from_pretrained(folder)
enc = tok(sentences, padding=True, return_tensors="pt")
h = m(**enc).last_hidden_state
mask = enc["attention_mask"].unsqueeze(-1).float()
opt = ((h * mask).sum(1) / mask.sum(1)).detach().numpy()
opt = opt / np.linalg.norm(opt, axis=-1, keepdims=True)
st = SentenceTransformer(folder, backend="onnx", model_kwargs={"file_name": "model.onnx"}, device="cpu")
print(json.dumps({"optimum": opt.tolist(), "st": st.encode(sentences).tolist()}))
"""


def test_optimum_and_sentence_transformers_load_the_export(emb, tmp_path):  # noqa: F811
    import onnxruntime as ort

    from cahp_edge.deploy.export import export_onnx
    from cahp_edge.model.load import load_model

    py = compat_python()
    lm = load_model(emb)
    export_onnx(lm, tmp_path / "onnx")
    sentences = [a for a, _, _ in PAIRS]
    r = subprocess.run([py, "-c", SCRIPT, str(tmp_path / "onnx"), json.dumps(sentences)],
                       capture_output=True, text=True, timeout=600)
    if "No module named 'sentence_transformers'" in r.stderr:
        import pytest

        pytest.skip(f"{py} has no sentence-transformers (re-run .ci/setup-compat.sh)")
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    enc = lm.tokenizer(sentences, padding=True, return_tensors="np")
    sess = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    want = sess.run(["sentence_embedding"], {i.name: enc[i.name] for i in sess.get_inputs()})[0]
    np.testing.assert_allclose(np.array(got["optimum"]), want, atol=1e-5)
    np.testing.assert_allclose(np.array(got["st"]), want, atol=1e-5)
