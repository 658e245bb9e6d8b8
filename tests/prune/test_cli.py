"""`cahp-edge prune` / `compare` end to end on a tiny saved classifier, and their bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers.tiny import tiny_model

torch.set_num_threads(1)  # tiny models: threading overhead dominates on a shared 2-core box

WORDS = [
    "good",
    "bad",
    "great",
    "awful",
    "fine",
    "movie",
    "film",
    "plot",
    "acting",
    "boring",
    "fun",
    "dull",
    "superb",
    "terrible",
    "nice",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from transformers import BertTokenizerFast

    d = tmp_path_factory.mktemp("tinycls")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"))
    m = tiny_model("bert", num_labels=5)
    m.config.id2label = {i: str(i + 1) for i in range(5)}
    m.config.label2id = {str(i + 1): i for i in range(5)}
    m.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def sst(tmp_path_factory) -> Path:
    import random

    rng = random.Random(0)
    d = tmp_path_factory.mktemp("sst")
    for name, n in (("train.txt", 120), ("dev.txt", 40)):
        lines = [
            f"__label__{rng.randint(1, 5)}\t{' '.join(rng.choices(WORDS, k=rng.randint(2, 9)))}"
            for _ in range(n)
        ]
        (d / name).write_text("\n".join(lines) + "\n")
    return d


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.returncode, self.stdout, self.stderr = code, out, err


@pytest.fixture
def run(capsys):
    """The CLI in-process (a subprocess would pay ~20 s of imports per call on a loaded 2-core box)."""
    from transformers.utils import logging as hf_logging

    from cahp_edge.cli import main

    hf_logging.disable_progress_bar()  # the real CLI sets this through env before transformers loads

    def _run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        c = capsys.readouterr()
        return Result(code, c.out, c.err)

    return _run


def test_prune_writes_plan_and_plots(tiny_dir, sst, tmp_path, run):
    out = tmp_path / "plan"
    r = run(
        "prune",
        "--model",
        str(tiny_dir),
        "--data",
        str(sst / "train.txt"),
        "--calib-size",
        "32",
        "--select-size",
        "40",
        "--out",
        str(out),
        "--degree",
        "2",
        "--method",
        "cahp",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert sorted(p.name for p in out.iterdir()) == [
        ".cahp-edge-output", "curve.png", "distance.png", "heads.png", "plan.json"]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["format"] == "cahp-head-plan/1" and plan["total_kept"] == d["heads_kept"] == plan["k_star"]
    assert plan["data"]["calib"].startswith("32 stratified rows")
    assert {"torch", "transformers", "cahp_edge"} <= set(plan["versions"])


def test_prune_select_takes_selection_rows_from_held_out_data(tiny_dir, sst, tmp_path, run):
    out = tmp_path / "plan"
    base = ["prune", "--model", str(tiny_dir), "--data", str(sst / "train.txt"), "--heads", "5"]
    sizes = ["--calib-size", "16", "--select-size", "30"]
    r = run(*base, *sizes, "--select", str(sst / "dev.txt"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "plan.json").read_text())["data"]
    assert data["select"].startswith("30 stratified rows of") and "dev.txt" in data["select"]
    assert "train.txt" in data["calib"]
    r = run(*base, "--select", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "p2"))
    assert r.returncode == 1 and r.stderr.startswith("error: dataset not found")
    assert not (tmp_path / "p2").exists()


def test_prune_fixed_budget_baseline(tiny_dir, sst, tmp_path, run):
    out = tmp_path / "p"
    r = run(
        "prune",
        "--model",
        str(tiny_dir),
        "--data",
        str(sst / "train.txt"),
        "--calib-size",
        "16",
        "--select-size",
        "16",
        "--method",
        "michel",
        "--heads",
        "5",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "plan.json").read_text())["total_kept"] == 5


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--degree", "0"], 2, "degree"),
        (["--degree", "11"], 2, "degree"),
        (["--heads", "13"], 2, "outside the model's head count"),
        (["--calib-size", "500"], 1, "larger than the 120 training rows"),
        (["--method", "bogus"], 2, "unknown method"),
        (["--keep-ratio", "0"], 2, "keep-ratio"),
        (["--round-fraction", "0"], 2, "round-fraction"),
        (["--loss-below", "2"], 2, "loss-below"),
        (["--salience", "bogus"], 2, "unknown salience"),
        (["--salience-labels", "bogus"], 2, "unknown salience labels"),
    ],
)
def test_prune_bad_input(tiny_dir, sst, tmp_path, extra, code, needle, run):
    out = tmp_path / "bad"
    r = run(
        "prune",
        "--model",
        str(tiny_dir),
        "--data",
        str(sst / "train.txt"),
        "--calib-size",
        "16",
        "--select-size",
        "16",
        "--out",
        str(out),
        *extra,
    )
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr
    assert not out.exists() and not list(tmp_path.glob(".bad*"))


def test_prune_missing_and_empty_data(tiny_dir, tmp_path, run):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for data, needle in ((tmp_path / "nope.txt", "not found"), (empty, "empty")):
        r = run("prune", "--model", str(tiny_dir), "--data", str(data), "--out", str(tmp_path / "o"))
        assert r.returncode == 1 and needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert not (tmp_path / "o").exists()


def test_prune_labels_outside_model(tiny_dir, tmp_path, run):
    bad = tmp_path / "bad.txt"
    bad.write_text("__label__7\tgood movie\n__label__1\tbad film\n")
    r = run(
        "prune",
        "--model",
        str(tiny_dir),
        "--data",
        str(bad),
        "--calib-size",
        "1",
        "--out",
        str(tmp_path / "o"),
    )
    assert r.returncode == 1 and "not in the model's label set" in r.stderr, r.stderr


def test_compare_table_csv_plot(tiny_dir, sst, tmp_path, run):
    out = tmp_path / "cmp"
    r = run(
        "compare",
        "--model",
        str(tiny_dir),
        "--data",
        str(sst / "train.txt"),
        "--eval",
        str(sst / "dev.txt"),
        "--calib-size",
        "16",
        "--select-size",
        "16",
        "--budgets",
        "6,3",
        "--methods",
        "cahp,michel,random",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "cahp" in r.stdout and "michel" in r.stdout and "exact McNemar p" in r.stdout
    rows = (out / "compare.csv").read_text().strip().splitlines()
    assert rows[0].startswith("method,heads") and len(rows) == 1 + 3 * 2
    # paired with the first method on the same eval examples: the counts explain the accuracy gap
    res = json.loads((out / "compare.json").read_text())
    n_eval = len((sst / "dev.txt").read_text().strip().splitlines())
    by = {(x["method"], x["heads"]): x for x in res["rows"]}
    for (m, k), x in by.items():
        if m == "cahp":
            assert "vs_reference" not in x
            continue
        assert x["vs_reference"] == "cahp" and 0.0 <= x["mcnemar_p"] <= 1.0
        gap = (x["only_this"] - x["only_reference"]) / n_eval
        assert abs((x["eval_accuracy"] - by[("cahp", k)]["eval_accuracy"]) - gap) < 1e-9
    assert (out / "compare.png").stat().st_size > 0
    r = run(
        "compare",
        "--model",
        str(tiny_dir),
        "--data",
        str(sst / "train.txt"),
        "--eval",
        str(sst / "dev.txt"),
        "--budgets",
        "6,30",
        "--out",
        str(tmp_path / "c2"),
    )
    assert r.returncode == 2 and "budget 30 is outside" in r.stderr


def test_mcnemar_counts_and_exact_p():
    import torch

    from cahp_edge.prune.compare import mcnemar

    ref = torch.tensor([True] * 6 + [False, True, False])
    other = torch.tensor([False] * 6 + [False, True, True])
    r = mcnemar(ref, other)
    assert (r["only_reference"], r["only_this"]) == (6, 1)
    assert abs(r["mcnemar_p"] - 2 * 8 / 2**7) < 1e-12  # P(X <= 1 or X >= 6), X ~ Bin(7, 1/2)
    assert mcnemar(ref, ref)["mcnemar_p"] == 1.0  # no discordant pairs: no evidence either way


def test_heads_and_neurons_prune_reshape_reconstruct_through_the_cli(tiny_dir, sst, tmp_path, run):
    plan_dir, pruned, rec = tmp_path / "plan", tmp_path / "pruned", tmp_path / "rec"
    common = ["--data", str(sst / "train.txt"), "--calib-size", "32", "--select-size", "40"]
    r = run("prune", "--model", str(tiny_dir), *common, "--out", str(plan_dir), "--units", "heads+neurons",
            "--method", "fisher", "--speedup", "2", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert plan["format"] == "cahp-plan/2" and plan["budget_source"] == "--speedup"
    d = json.loads(r.stdout)
    assert plan["speedup_ideal"] == d["speedup_ideal"] >= 2.0
    assert d["neurons_per_layer"] == plan["neurons_per_layer"]
    assert d["cost_model"]["source"].startswith("MAC-proportional (not measured)")
    r = run("reshape", "--model", str(tiny_dir), "--plan", str(plan_dir), "--out", str(pruned), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["neurons_per_layer"] == plan["neurons_per_layer"]
    r = run("recover", "--model", str(pruned), "--data", str(sst / "train.txt"), "--out", str(rec),
            "--recover-method", "reconstruct", "--teacher", str(tiny_dir), "--eval", str(sst / "dev.txt"),
            "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["train"]["steps"] == 0 and d["reconstruction"]["positions"] > 0
    assert 0 < d["reconstruction"]["error_ratio"] < 1
    saved = json.loads((rec / "cahp_heads.json").read_text())
    assert saved["recovery"]["method"] == "reconstruct"
    assert saved["neurons_per_layer"] == plan["neurons_per_layer"]


@pytest.mark.parametrize("args, code, needle", [
    (["--speedup", "0.5"], 2, "--speedup"),
    (["--units", "heads", "--speedup", "9"], 2, "out of reach for head pruning alone"),
    (["--units", "heads+neurons", "--method", "michel", "--speedup", "2"], 2, "selects attention heads only"),
    (["--speedup", "2", "--heads", "4"], 2, "--heads and --speedup both given"),
])
def test_bad_budgets_are_one_line_usage_errors(tiny_dir, sst, tmp_path, run, args, code, needle):
    r = run("prune", "--model", str(tiny_dir), "--data", str(sst / "train.txt"), "--calib-size", "32",
            "--select-size", "40", "--out", str(tmp_path / "p"), *args)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code and len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("method", ["reconstruct", "auto"])  # auto: a neuron plan on a CPU re-fits
def test_reconstruct_without_the_dense_model_is_refused(tiny_dir, sst, tmp_path, run, method):
    plan = {"format": "cahp-plan/2", "num_heads": [4, 4, 4], "kept": [[0], [1, 2], [3]],
            "num_neurons": [48, 48, 48], "kept_neurons": [[1, 2], [3], list(range(20))]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert run("reshape", "--model", str(tiny_dir), "--plan", str(tmp_path / "plan.json"),
               "--out", str(tmp_path / "p")).returncode == 0
    r = run("recover", "--model", str(tmp_path / "p"), "--data", str(sst / "train.txt"),
            "--out", str(tmp_path / "r"), "--recover-method", method)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "pass --teacher DENSE_DIR" in lines[0], r.stderr
    assert not (tmp_path / "r").exists()


def test_compare_heads_and_neurons_at_the_same_speedups(tiny_dir, sst, tmp_path, run):
    import csv

    out = tmp_path / "cmp"
    common = ["--model", str(tiny_dir), "--data", str(sst / "train.txt"), "--eval", str(sst / "dev.txt")]
    r = run("compare", *common, "--calib-size", "32", "--select-size", "40", "--out", str(out),
            "--speedups", "1.5,2x", "--methods", "fisher,uniform", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["units"] == "heads+neurons" and res["budgets"] == [1.5, 2.0]
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [(x["method"], float(x["speedup"])) for x in rows] == [
        ("fisher", 1.5), ("fisher", 2.0), ("uniform", 1.5), ("uniform", 2.0)]
    for x in res["rows"]:
        assert x["speedup_ideal"] >= x["speedup"] and x["neurons"] < 3 * 48
    for x in res["rows"][2:]:  # uniform, paired with fisher on the same 40 dev rows
        assert x["vs_reference"] == "fisher" and x["only_reference"] + x["only_this"] <= 40
    assert sorted(p.name for p in out.iterdir()) == [".cahp-edge-output", "compare.csv", "compare.json",
                                                      "compare.png"]


@pytest.mark.parametrize("args, needle", [
    (["--speedups", "0.5"], "speedup 0.5 is below 1"),
    (["--speedups", "2", "--methods", "michel"], "unknown method(s) ['michel'] for --speedups"),
    (["--speedups", "two"], "speedup 'two' is not a number"),
])
def test_compare_speedups_bad_input(tiny_dir, sst, tmp_path, run, args, needle):
    r = run("compare", "--model", str(tiny_dir), "--data", str(sst / "train.txt"),
            "--eval", str(sst / "dev.txt"), "--out", str(tmp_path / "c"), *args)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "c").exists()
