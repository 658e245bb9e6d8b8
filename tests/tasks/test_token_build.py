"""`cahp-edge build` of a tiny token classifier (fine-tuned by finetune_tokens): every stage runs for the
task; the release's entity F1 is what the runner's per-word tags score under seqeval (issue 16)."""

from __future__ import annotations

import json

import pytest

from cahp_edge.build.options import make_options
from cahp_edge.build.pipeline import build
from cahp_edge.errors import DataError
from tests.helpers.build_tiny import TINY_CONFIG
from tests.tasks.test_tokens import FAST, base_dir, toy_conll, write  # noqa: F401  (base_dir: fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ner(base_dir, tmp_path_factory):  # noqa: F811
    import torch

    from cahp_edge.train.loop import TrainConfig
    from cahp_edge.train.tokens import finetune_tokens

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("nerbuild")
    train = write(root / "train.txt", toy_conll(64, 1))
    dev = write(root / "dev.txt", toy_conll(16, 2))
    finetune_tokens(base_dir, train, root / "ner", dev, TrainConfig(**FAST))
    lines = [ln for ln in TINY_CONFIG.splitlines() if not ln.startswith(("heads", "allow_weak"))]
    top = 'speedup = 1.3\nunits = "heads+neurons"\ncost_model = "macs"\nmax_length = 24\n'
    (root / "build.toml").write_text(top + "\n".join(ln for ln in lines if not ln.startswith("max_length"))
                                     + "\n")
    return root


def _opts(root, out, **extra):
    cli = {"model": str(root / "ner"), "data": str(root / "train.txt"), "eval": str(root / "dev.txt"),
           "targets": ["x86-64-avx2"], "out": str(root / out), **extra}
    return make_options(cli, root / "build.toml")


def test_token_build_ships_a_tagger_scored_by_seqeval(ner):
    from cahp_edge.model.tagging import entity_scores
    from cahp_edge.runtime.profile import Settings, profile_package

    res = build(_opts(ner, "out"))
    assert res.stages["check"].summary["entity_f1"] > 0.9
    d = res.releases["x86-64-avx2"].dir
    assert json.loads((d / "config.json").read_text())["cahp_task"] == "token-classification"
    rows = [json.loads(x) for x in (d / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and set(rows[0]) == {"tokens", "tags"}
    val = res.stages["validate:x86-64-avx2"].summary
    assert val["metric"] == "entity_f1"
    # the shipped F1 = seqeval on the torch-free runner's tags for the shipped files
    again = profile_package(d, Settings(latency=False, operators=False, seq_len=16))["accuracy"]
    want = entity_scores([r["tags"] for r in rows], again["predicted_tags"])["f1"]
    assert want == pytest.approx(val["accuracy"]["shipped"], abs=1e-6)
    q = res.stages["quantize:x86-64-avx2"].summary
    assert "tag agreement" in q["accuracy"]["measure"]
    # `cahp-edge validate` with the CoNLL file itself: staged as the runner's rows, the same F1
    from cahp_edge.targets.validate import validate

    rep = validate(d, "x86-64-avx2", data=ner / "dev.txt", runs=2, warmup=1, seq_len=16)
    assert rep.accuracy == pytest.approx(val["accuracy"]["shipped"], abs=1e-6)
    assert rep.profile["accuracy"]["entities"] == 32  # 16 sentences x 2 gold entities
    # run.py decodes raw text into entity spans whose offsets slice the text
    text = "john smith works for acme ."
    ents = json.loads(_run(d, "run.py", text))["entities"]
    assert ents and all(text[e["start"]:e["end"]] == e["text"] for e in ents)
    card = (d / "MODEL_CARD.md").read_text()
    assert "token-classification model" in card and "| model | entity_f1 |" in card
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert "[CLS]" in _run(d, "-c", snippet)


def _run(cwd, *args) -> str:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_unknown_tags_in_eval_are_named(ner, tmp_path):
    bad = write(tmp_path / "bad.txt", toy_conll(8, 3, org_tag="B-COMPANY"))
    with pytest.raises(DataError, match="B-COMPANY"):
        build(_opts(ner, "bad", eval=str(bad)))
