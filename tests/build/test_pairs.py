"""Sentence-pair tasks end to end (the `pair_release` fixture is in tests/conftest.py): the build's
metrics.json, `cahp-edge validate` of the release and the device runner must score the same examples
the same way (the build once evaluated sentence1 alone; the staging step that dropped the pairs is
tested directly in tests/targets/test_validate.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cahp_edge.build.options import make_options
from cahp_edge.build.pipeline import build
from cahp_edge.fsutil import sha256_file
from tests.helpers.build_tiny import make_pair_data

pytestmark = pytest.mark.slow  # an end-to-end build of a tiny model

REPO = Path(__file__).resolve().parents[2]


def _runner(pkg: Path) -> dict:
    """What the device-side runner (onnxruntime + numpy + tokenizers) measures on the packaged eval file."""
    cmd = [sys.executable, "-m", "cahp_edge.runtime", "profile", str(pkg), "--json", "--runs", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["accuracy"]


def test_metrics_validate_and_runner_agree_on_pairs(pair_release):
    _, rel = pair_release
    rows = [json.loads(line) for line in (rel / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(r.get("text_pair") for r in rows)  # the shipped eval file keeps the pairs

    doc = json.loads((rel / "metrics.json").read_text())
    metrics, raw = doc["models"]["shipped"], doc["raw"]
    runner = _runner(rel)
    cmd = [sys.executable, "-m", "cahp_edge", "validate", str(rel), "--target", "host", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode in (0, 1), r.stderr  # 1 = a budget failed; the accuracy is what we compare
    validated = json.loads(r.stdout)
    assert metrics["eval_examples"] == runner["n"] == 24
    assert metrics["accuracy"] == pytest.approx(runner["accuracy"], abs=1e-9)
    assert validated["accuracy"] == pytest.approx(runner["accuracy"], abs=1e-9)
    # validate of a release takes the baseline the build measured (same eval file), so the accuracy
    # budget is checked, not left "not measured"
    acc_check = next(c for c in validated["checks"] if c["name"] == "accuracy_drop")
    assert acc_check["status"] != "skip" and any("metrics.json" in n for n in validated["notes"])
    assert acc_check["measured"] == pytest.approx(doc["models"]["dense"]["accuracy"] - runner["accuracy"],
                                                  abs=1e-6)
    # the same examples, byte for byte: every model the build measured scored the shipped eval.jsonl
    # (a rewrite through a loader that dropped text_pair had another hash), with the same predictions
    shipped_sha = sha256_file(rel / "eval.jsonl")
    assert runner["eval_sha256"] == shipped_sha
    for name in ("dense", "pruned", "shipped"):
        assert raw[name]["profile"]["accuracy"]["eval_sha256"] == shipped_sha, name
    assert raw["shipped"]["profile"]["accuracy"]["predictions"] == runner["predictions"]


def test_select_file_feeds_the_knee_and_the_cache_key(pair_release, tmp_path):
    """`build --select FILE`: selection rows come from held-out data (recorded in the plan); another
    selection file is another prune stage, never a cached one."""
    root, _ = pair_release
    make_pair_data(tmp_path / "held", n_train=20, n_dev=4)
    base = {"model": str(root / "ck"), "data": str(root / "data" / "train.tsv"),
            "eval": str(root / "data" / "dev.tsv"), "targets": ["host"], "out": str(tmp_path / "dist")}
    # its own --out: the session's pair release stays as built for the other tests
    res = build(make_options({**base, "select": str(tmp_path / "held" / "train.tsv")}, root / "build.toml"))
    plan = json.loads((tmp_path / "dist" / "host" / "cahp_heads.json").read_text())
    assert plan["data"]["select"].startswith("16 stratified rows of train.tsv")
    # file names in the release, told apart by their sha256 in the manifest
    data = json.loads((tmp_path / "dist" / "host" / "manifest.json").read_text())["data"]
    assert data["select"] == "train.tsv"
    assert data["select_sha256"] == sha256_file(tmp_path / "held" / "train.tsv")
    assert data["train_sha256"] == sha256_file(root / "data" / "train.tsv") != data["select_sha256"]
    assert not res.stages["prune"].hit  # a new selection file: selected again, not served from the cache
    shared = json.loads((root / "dist" / "host" / "manifest.json").read_text())["data"]
    assert "select" not in shared


def test_unlabelled_select_file_is_labelled_by_the_dense_model(pair_release, tmp_path):
    """`--select` rows without a label column: the dense model's predictions become their labels, so the
    knee measures agreement with the dense model; the manifest says so."""
    import torch

    from cahp_edge.data import load_dataset
    from cahp_edge.model.evaluate import pseudo_label
    from cahp_edge.model.load import load_model

    root, _ = pair_release
    make_pair_data(tmp_path / "held", n_train=20, n_dev=4)
    rows = load_dataset(str(tmp_path / "held" / "train.tsv"))
    unl = tmp_path / "unlabelled.jsonl"
    unl.write_text("".join(json.dumps({"text": t, "text_pair": p}) + "\n"
                           for t, p in zip(rows.texts, rows.pairs, strict=True)))
    base = {"model": str(root / "ck"), "data": str(root / "data" / "train.tsv"),
            "eval": str(root / "data" / "dev.tsv"), "targets": ["host"], "out": str(tmp_path / "dist"),
            "select": str(unl)}
    res = build(make_options(base, root / "build.toml"))
    lab = res.stages["label-select"]
    labelled = [json.loads(line) for line in (lab.path / "select.jsonl").read_text().splitlines()]
    lm = load_model(root / "ck")
    torch.manual_seed(0)
    want = pseudo_label(lm.model, lm.tokenizer, load_dataset(str(unl), labels=False))
    assert [r["label"] for r in labelled] == [want.label_names[y] for y in want.labels]
    assert [(r["text"], r["text_pair"]) for r in labelled] == list(zip(rows.texts, rows.pairs, strict=True))
    data = json.loads((tmp_path / "dist" / "host" / "manifest.json").read_text())["data"]
    assert data["select"] == "unlabelled.jsonl" and data["select_labels"] == "dense model predictions"
    assert data["select_sha256"] == sha256_file(unl)
    plan = json.loads((tmp_path / "dist" / "host" / "cahp_heads.json").read_text())
    assert plan["data"]["select"].startswith("16 stratified rows of label-select-")
    # a labelled --select file is used as given: no labelling stage
    res2 = build(make_options({**base, "select": str(tmp_path / "held" / "train.tsv")}, root / "build.toml"))
    assert "label-select" not in res2.stages


def test_plain_text_training_data_is_labelled_by_the_dense_model(pair_release, tmp_path):
    """`--data` as plain text (text<TAB>pair per line, no labels): the dense model labels it, the build
    runs on those labels (agreement with the dense model), the manifest says where labels came from."""
    from cahp_edge.data import load_dataset
    from cahp_edge.model.evaluate import pseudo_label
    from cahp_edge.model.load import load_model

    root, _ = pair_release
    rows = load_dataset(str(root / "data" / "train.tsv"))
    plain = tmp_path / "train.txt"
    plain.write_text("".join(f"{t}\t{p}\n" for t, p in zip(rows.texts, rows.pairs, strict=True)))
    base = {"model": str(root / "ck"), "data": str(plain), "eval": str(root / "data" / "dev.tsv"),
            "targets": ["host"], "out": str(tmp_path / "dist")}
    res = build(make_options(base, root / "build.toml"))
    written = (res.stages["label-data"].path / "data.jsonl").read_text().splitlines()
    labelled = [json.loads(x) for x in written]
    lm = load_model(root / "ck")
    want = pseudo_label(lm.model, lm.tokenizer, load_dataset(str(plain), labels=False))
    assert [r["label"] for r in labelled] == [want.label_names[y] for y in want.labels]
    data = json.loads((tmp_path / "dist" / "host" / "manifest.json").read_text())["data"]
    assert data["train"] == "train.txt" and data["train_labels"] == "dense model predictions"
    assert data["train_sha256"] == sha256_file(plain)
    plan = json.loads((tmp_path / "dist" / "host" / "cahp_heads.json").read_text())
    assert plan["selection_measure"] == "argmax agreement with the dense model"
    # a table without a label column is not "unlabelled text": a misnamed column must not be ignored
    table = tmp_path / "nolabel.tsv"
    table.write_text("sentence1\tsentence2\tstars\n" + "".join(
        f"{t}\t{p}\t1\n" for t, p in zip(rows.texts, rows.pairs, strict=True)))
    from cahp_edge.errors import DataError

    with pytest.raises(DataError, match=r"no label column.*--label-column"):
        build(make_options({**base, "data": str(table), "out": str(tmp_path / "d2")}, root / "build.toml"))
    assert not (tmp_path / "d2").exists()
