"""Sentence-embedding models end to end on a tiny BERT: task detection, pooling, label-free selection,
pruned save/load, ONNX export parity, the torch-free runner's Spearman, bad input (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cahp_edge.errors import DataError, ModelError
from cahp_edge.tasks import detect_task
from tests.helpers.build_tiny import make_checkpoint

PAIRS = [("the cat sat on the mat", "a cat sat on a mat", 4.8),
         ("the film was good", "the movie was fine", 3.9),
         ("a dog runs", "stock prices fell", 0.2), ("the food was bad", "the meal was awful", 4.1),
         ("he plays guitar", "she plays violin", 2.0), ("rain falls today", "it is raining", 4.4),
         ("the car is red", "bananas are yellow", 0.5), ("a man cooks", "a man is cooking food", 4.6)]


def make_embedder(d: Path, mode: str = "mean", normalize: bool = True, pooling: bool = True,
                  seed: int = 0) -> Path:
    """A tiny sentence-transformers folder: bare BertModel + tokenizer + modules.json + 1_Pooling."""
    from transformers import BertModel

    ck = make_checkpoint(d / "cls", seed=seed)
    cls_dir = d / "cls"
    base = BertModel.from_pretrained(str(cls_dir)).eval()  # the classifier's encoder, no head
    out = d / "emb"
    base.save_pretrained(str(out))
    for f in cls_dir.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special")):
            (out / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((out / "config.json").read_text())
    cfg.pop("id2label", None), cfg.pop("label2id", None)
    (out / "config.json").write_text(json.dumps(cfg))
    if pooling:
        mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            mods.append({"idx": 2, "name": "2", "path": "2_Normalize",
                         "type": "sentence_transformers.models.Normalize"})
        (out / "modules.json").write_text(json.dumps(mods))
        (out / "1_Pooling").mkdir()
        (out / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": 32, "pooling_mode_cls_token": mode == "cls",
            "pooling_mode_mean_tokens": mode == "mean", "pooling_mode_max_tokens": mode == "max"}))
    del ck
    return out


@pytest.fixture(scope="module")
def emb(tmp_path_factory) -> Path:
    return make_embedder(tmp_path_factory.mktemp("emb"))


def _sts(d: Path) -> Path:
    f = d / "sts.tsv"
    f.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS))
    return f


# ---- task detection ------------------------------------------------------------------------------
def test_task_detection_from_checkpoint_folders(emb, tmp_path):
    assert detect_task(emb).name == "sentence-embedding"  # modules.json + Pooling
    cls = make_checkpoint(tmp_path / "c")
    assert detect_task(cls).name == "sequence-classification"
    (cls / "modules.json").write_text((emb / "modules.json").read_text())  # a fine-tuned ST folder
    assert detect_task(cls).name == "sequence-classification"  # the task head wins
    cfg = json.loads((cls / "config.json").read_text())
    cfg["architectures"] = ["BertForTokenClassification"]
    (cls / "config.json").write_text(json.dumps(cfg))
    assert detect_task(cls).name == "token-classification"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    assert detect_task(bare) is None


def test_bare_encoder_is_refused_with_both_fixes(tmp_path, emb):
    from cahp_edge.model.load import load_model

    bare = tmp_path / "bare"
    bare.mkdir()
    for f in emb.iterdir():
        if f.is_file() and f.name != "modules.json":
            (bare / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ModelError, match="--task sentence-embedding"):
        load_model(bare, require_classifier=True)
    # asked for: the default pooling is stated, not silent
    lm = load_model(bare, task="sentence-embedding")
    assert lm.task == "sentence-embedding" and "mean pooling" in lm.notes[0]


# ---- pooling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["mean", "cls", "max"])
def test_pooling_matches_a_by_hand_computation(tmp_path, mode):
    from transformers import BertModel

    from cahp_edge.model.load import load_model

    d = make_embedder(tmp_path, mode=mode, normalize=mode != "max")
    lm = load_model(d)
    enc = lm.tokenizer(["the cat sat", "a much longer sentence about the dog"], padding=True,
                       return_tensors="pt")
    got = lm.model(**enc).logits  # (2, 32)
    h = BertModel.from_pretrained(str(d)).eval()(**enc).last_hidden_state  # (2, T, 32)
    m = enc["attention_mask"].unsqueeze(-1).float()
    want = {"mean": (h * m).sum(1) / m.sum(1), "cls": h[:, 0],
            "max": h.masked_fill(m == 0, -1e9).amax(1)}[mode]
    if mode != "max":
        want = want / want.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got.norm(dim=-1) - 1).abs().max() < 1e-5 if mode != "max" else True


def test_two_pooling_modes_are_refused(tmp_path):
    from cahp_edge.model.embedder import read_pooling

    d = make_embedder(tmp_path)
    (d / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                            "pooling_mode_mean_tokens": True}))
    with pytest.raises(ModelError, match="exactly one"):
        read_pooling(d)


# ---- parity: PyTorch vs ONNX vs the torch-free runner ------------------------------------------------
def test_export_and_runner_agree_with_pytorch(emb, tmp_path):
    from cahp_edge.data import load_dataset
    from cahp_edge.deploy.export import export_onnx
    from cahp_edge.model.evaluate import sts_spearman
    from cahp_edge.model.load import load_model
    from cahp_edge.runtime.profile import Settings, profile_package

    lm = load_model(emb)
    om = export_onnx(lm, tmp_path / "onnx")
    assert om.parity.ok and om.parity.min_cosine > 1 - 1e-5 and om.parity.max_abs_diff < 1e-4
    meta = json.loads((tmp_path / "onnx" / "cahp_onnx.json").read_text())
    assert meta["outputs"] == ["sentence_embedding"] and meta["task"] == "sentence-embedding"
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["cahp_task"] == "sentence-embedding"
    # the runner embeds each side, cosines, ranks: the same Spearman as PyTorch + scipy on the same rows
    ds = load_dataset(_sts(tmp_path), scores=True)
    with open(tmp_path / "onnx" / "eval.jsonl", "w") as f:
        for a, b, s in PAIRS:
            f.write(json.dumps({"text": a, "text_pair": b, "score": s}) + "\n")
    res = profile_package(tmp_path / "onnx", Settings(latency=False, operators=False,
                                                      logits_out=tmp_path / "e.npy"))
    want = sts_spearman(lm.model, lm.tokenizer, ds)
    assert res["accuracy"]["metric"] == "spearman"
    assert res["accuracy"]["spearman"] == pytest.approx(want, abs=1e-6)
    # the runner's vectors are the PyTorch embeddings (one session.run gives the pooled, normalised vector)
    from cahp_edge.model.evaluate import embed_texts

    runner = np.load(tmp_path / "e.npy")  # (2N, D): texts then pairs
    torch_e = embed_texts(lm.model, lm.tokenizer, [a for a, _, _ in PAIRS] + [b for _, b, _ in PAIRS])
    np.testing.assert_allclose(runner, torch_e.numpy(), atol=1e-4)


def test_runner_spearman_equals_scipy_with_ties():
    from scipy.stats import spearmanr

    from cahp_edge.runtime.similarity import spearman

    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 200).astype(float)  # many ties
    y = x + rng.normal(0, 2, 200)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5)))


# ---- label-free selection, reshape, save/load ----------------------------------------------------------
def test_label_free_selection_prunes_and_reloads_bit_identically(emb, tmp_path):
    from cahp_edge.data import load_dataset
    from cahp_edge.data.unlabelled import sentences
    from cahp_edge.model.load import load_model, save_pruned
    from cahp_edge.model.reshape import reshape
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.fisher import unit_fisher
    from cahp_edge.prune.options import PruneOptions
    from cahp_edge.prune.salience import with_dense_targets
    from cahp_edge.prune.sweep import SelectionData
    from cahp_edge.prune.units import select_units

    lm = load_model(emb)
    ds = sentences(load_dataset(_sts(tmp_path), labels=False))
    assert len(ds) == 2 * len(PAIRS) and not ds.labelled
    b = with_dense_targets(lm.model, from_dataset(lm.tokenizer, ds, 32, 8))
    assert b.items[0]["labels"].shape[1] == 32  # targets are the dense (B, D) embeddings
    heads, neurons = unit_fisher(lm.model, lm.adapter, b)
    # the contrastive loss has a gradient at the dense model (1 - cosine would not: all zeros)
    assert heads.shape == (3, 4) and neurons.shape == (3, 48) and bool((heads > 0).all())
    plan = select_units(lm.model, lm.adapter, SelectionData(b, b), PruneOptions(units="heads+neurons",
                        method="fisher", speedup=1.5, rivals="none", seed=0))
    assert plan.total_kept < 12
    pruned = reshape(lm.model, plan, lm.adapter)
    save_pruned(pruned, plan, tmp_path / "p", lm.tokenizer)
    back = load_model(tmp_path / "p")
    assert back.task == "sentence-embedding"
    assert (back.model.pooling.mode, back.model.pooling.normalize) == ("mean", True)
    enc = lm.tokenizer(["the cat sat on the mat", "rain"], padding=True, return_tensors="pt")
    assert torch.equal(back.model(**enc).logits, pruned(**enc).logits)
    with pytest.raises(ModelError, match="pruned as a sentence-embedding"):
        load_model(tmp_path / "p", task="sequence-classification")


# ---- bad input -------------------------------------------------------------------------------------
def test_unlabelled_text_files(tmp_path):
    from cahp_edge.data import load_dataset

    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(DataError, match="empty"):
        load_dataset(empty, labels=False)
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("one sentence\ntwo\tsides\n")
    with pytest.raises(DataError, match="mixed single/pair lines"):
        load_dataset(mixed, labels=False)
    plain = tmp_path / "plain.txt"
    plain.write_text("first line\nsecond line\n")
    assert load_dataset(plain, labels=False).texts == ["first line", "second line"]


def test_labelled_data_for_an_embedding_model_says_labels_are_ignored(tmp_path):
    from cahp_edge.data import load_dataset
    from cahp_edge.data.unlabelled import ignored_labels, sentences

    f = tmp_path / "sst.txt"
    f.write_text("__label__1\tawful\n__label__5\tgreat\n")
    raw = load_dataset(f, labels=False)
    assert "ignored" in ignored_labels(raw)
    assert sentences(raw).labels == [-1, -1]
    assert ignored_labels(sentences(raw)) is None


def test_scores_must_be_numbers(tmp_path):
    from cahp_edge.data import load_dataset

    f = tmp_path / "bad.tsv"
    f.write_text("sentence1\tsentence2\tscore\na\tb\thigh\n")
    with pytest.raises(DataError, match="not a number"):
        load_dataset(f, scores=True)


def test_emulated_spearman_scores_each_platform_and_their_distance():
    from scipy.stats import spearmanr

    from cahp_edge.targets.validate import _emulated_spearman

    rng = np.random.default_rng(1)
    host = rng.normal(size=(2 * len(PAIRS), 16)).astype(np.float32)  # texts then pairs
    arm = host + rng.normal(scale=1e-3, size=host.shape).astype(np.float32)
    scores = [s for _, _, s in PAIRS]
    out = _emulated_spearman(host, arm, scores)
    n = len(PAIRS)
    norms = np.linalg.norm(host[:n], axis=-1) * np.linalg.norm(host[n:], axis=-1)
    cos = (host[:n] * host[n:]).sum(-1) / norms
    assert out["accuracy_x86"] == pytest.approx(spearmanr(cos, scores).statistic, abs=1e-9)
    assert out["metric"] == "spearman" and 0.99 < out["min_cosine_arm_vs_x86"] < 1.0


def test_cli_prune_points_embedding_models_to_build(emb, tmp_path, capsys):
    from cahp_edge import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["prune", "--model", str(emb), "--data", str(_sts(tmp_path)), "--out", str(tmp_path / "p")])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert "sentence-embedding model" in err and "cahp-edge build" in err and err.count("\n") == 1
    assert not (tmp_path / "p").exists()


def test_validate_emulates_an_embedding_release_on_a_pi5_core(emb, tmp_path):
    """`validate --emulate` on an embedding model: Spearman from x86 and from emulated cortex-a76
    kernels on the same pairs; fp32 kernels agree to ~1e-6, so the two Spearmans are equal."""
    import os

    from cahp_edge.deploy.export import export_onnx
    from cahp_edge.model.load import load_model
    from cahp_edge.targets.validate import validate

    if not os.environ.get("CAHP_ARM64_ROOT"):
        pytest.skip("CAHP_ARM64_ROOT is not set: build it with 'bash scripts/setup-arm64-emulation.sh DIR'")
    export_onnx(load_model(emb), tmp_path / "onnx")
    rep = validate(tmp_path / "onnx", "rpi5-arm64", data=_sts(tmp_path), emulate=True, runs=2, warmup=1)
    e = rep.emulation
    assert e["metric"] == "spearman" and e["n"] == 2 * len(PAIRS)
    assert e["accuracy_arm"] == pytest.approx(e["accuracy_x86"], abs=1e-9)
    assert e["min_cosine_arm_vs_x86"] > 1 - 1e-5
    assert rep.accuracy == e["accuracy_arm"]  # the budget is judged on the ARM kernels' Spearman


def test_paired_test_is_wilcoxon_for_cosines_and_mcnemar_for_correctness():
    from scipy.stats import binomtest, wilcoxon

    from cahp_edge.prune.paired import mcnemar, p_value

    a = torch.tensor([0.9, 0.8, 0.95, 0.7, 0.85, 0.99, 0.6, 0.75])
    b = a - torch.tensor([0.1, 0.05, 0.0, 0.2, 0.01, 0.02, -0.03, 0.04])
    t = mcnemar(a, b)
    d = (a.double() - b.double()).numpy()
    assert "mcnemar_p" not in t and t["only_reference"] == 6 and t["only_this"] == 1
    assert p_value(t) == pytest.approx(wilcoxon(d[d != 0]).pvalue)
    ok1, ok2 = torch.tensor([1.0, 1, 0, 1, 0]), torch.tensor([0.0, 1, 0, 0, 1])  # 1/0 scores
    t = mcnemar(ok1, ok2)
    assert (t["only_reference"], t["only_this"]) == (2, 1)
    assert p_value(t) == pytest.approx(binomtest(2, 3).pvalue)
