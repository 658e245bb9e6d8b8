"""`cahp-edge build` of a tiny sentence-embedding model from unlabelled text: every stage runs for the
task, the release ships the pooled embedding graph and is scored by STS Spearman (issue 16)."""

from __future__ import annotations

import json

import pytest

from cahp_edge.build.options import make_options
from cahp_edge.build.pipeline import build
from cahp_edge.errors import DataError
from tests.helpers.build_tiny import TINY_CONFIG
from tests.tasks.test_embeddings import PAIRS, make_embedder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("embuild")
    make_embedder(root)
    lines = [ln for ln in TINY_CONFIG.splitlines() if not ln.startswith(("heads", "allow_weak"))]
    # top-level keys go before [benchmark]
    top = 'speedup = 1.5\nunits = "heads+neurons"\ncost_model = "macs"\n'
    (root / "build.toml").write_text(top + "\n".join(lines) + "\n")
    words = ["the", "a", "cat", "dog", "film", "food", "rain", "car", "man", "sat", "runs", "was",
             "good", "bad", "red", "plays", "cooks"]
    text = [" ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i % 5)) for i in range(80)]
    (root / "train.txt").write_text("\n".join(text) + "\n")  # plain sentences: no labels anywhere
    (root / "sts.tsv").write_text("sentence1\tsentence2\tscore\n"
                                  + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS))
    return root


def _opts(root, out, **extra):
    cli = {"model": str(root / "emb"), "data": str(root / "train.txt"), "eval": str(root / "sts.tsv"),
           "targets": ["x86-64-avx2"], "out": str(root / out), **extra}
    return make_options(cli, root / "build.toml")


def test_embedding_build_ships_a_pooled_graph_scored_by_spearman(root):
    res = build(_opts(root, "out"))
    assert res.stages["check"].summary["spearman"] == res.stages["check"].summary["spearman"]  # not nan
    assert res.stages["recover"].summary["method"] == "reconstruct"  # label-free recovery
    d = res.releases["x86-64-avx2"].dir
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["cahp_task"] == "sentence-embedding"
    # sentence-transformers' module files ride along (its ONNX backend pools last_hidden_state itself)
    pool = json.loads((d / "1_Pooling" / "config.json").read_text())
    assert pool["pooling_mode_mean_tokens"] and pool["word_embedding_dimension"] == 32
    assert [m["type"].rsplit(".", 1)[1] for m in json.loads((d / "modules.json").read_text())] == [
        "Transformer", "Pooling", "Normalize"]
    from cahp_edge.release.package import check_files, read_sums

    assert "1_Pooling/config.json" in read_sums(d) and check_files(d) == len(read_sums(d))
    rows = [json.loads(x) for x in (d / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == len(PAIRS) and set(rows[0]) == {"score", "text", "text_pair"}
    val = res.stages["validate:x86-64-avx2"].summary
    assert val["metric"] == "spearman"
    # the build's shipped number is what the torch-free runner measures on the shipped files
    from cahp_edge.runtime.profile import Settings, profile_package

    # at the settings the build measured with (its [benchmark] override truncates at seq 16)
    again = profile_package(d, Settings(latency=False, operators=False, seq_len=16))
    assert again["accuracy"]["spearman"] == pytest.approx(val["accuracy"]["shipped"], abs=1e-6)
    q = res.stages["quantize:x86-64-avx2"].summary
    assert "cosine" in q["accuracy"]["measure"] and 0.5 < q["agreement"] <= 1.0 + 1e-9
    # run.py and the model card's snippet give the shipped graph's embedding (unit norm: pooled and
    # normalised inside the graph), the same vector from both
    out = json.loads(_run(d, "run.py", PAIRS[0][0]))["embedding"]
    assert len(out) == 32 and abs(sum(v * v for v in out) - 1) < 1e-4
    card = (d / "MODEL_CARD.md").read_text()
    assert "sentence-embedding model" in card and "| model | spearman |" in card
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    shape, norm = _run(d, "-c", snippet).split(") ")
    assert shape == "(32," and abs(float(norm) - 1) < 1e-4


def _run(cwd, *args) -> str:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_embedding_build_needs_graded_eval_pairs(root):
    with pytest.raises(DataError, match="needs --eval"):
        build(_opts(root, "no-eval", eval=None))
    with pytest.raises(DataError, match=r"single texts|no score column"):
        build(_opts(root, "bad-eval", eval=str(root / "train.txt")))
