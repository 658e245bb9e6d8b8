"""`cahp-edge inspect` / `cahp-edge reshape` on a tiny checkpoint, and every bad input the issue lists.

Bad input contract: one line on stderr, exit 1 (2 for usage errors), no traceback without --debug,
no output folder (or half-written temp folder) left behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cahp_edge.cli import main
from cahp_edge.errors import CahpError
from cahp_edge.model.accounting import head_params
from tests.helpers.tiny import tiny_batch, tiny_model

REPO = Path(__file__).resolve().parents[2]
PLAN = {"num_heads": [4, 4, 4], "kept": [[0, 3], [], [1, 2, 3]]}


@pytest.fixture(autouse=True, scope="module")
def _quiet_transformers():
    # main() silences progress bars through env vars read when transformers is imported; in this
    # process it already is (test_real_process_stderr_is_one_line checks the real thing)
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    yield
    if was:
        logging.enable_progress_bar()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny dense BERT classifier saved the way users hand it to us (no tokenizer: not needed here)."""
    d = tmp_path_factory.mktemp("ckpt") / "bert"
    tiny_model("bert", num_labels=3, seed=5).save_pretrained(str(d))
    return d


def cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def write(p: Path, data) -> Path:
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def assert_one_line_failure(rc, err, code, *needles):
    lines = err.strip().splitlines()
    assert rc == code, f"exit {rc}, stderr: {err}"
    assert len(lines) == 1, f"expected one stderr line, got: {err}"
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


def no_leftovers(parent: Path, keep: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == keep, "output or .partial folder left behind"


# ---- working commands ------------------------------------------------------------------------------
def test_inspect_and_reshape_on_a_tiny_checkpoint(ckpt, tmp_path, capsys):
    dense = tiny_model("bert", num_labels=3, seed=5)
    n_dense = sum(p.numel() for p in dense.parameters())
    rc, out, _ = cli(capsys, "inspect", ckpt, "--json")
    d = json.loads(out)
    assert rc == 0 and d["heads"] == 12 and [c["heads"] for c in d["layers"]] == [4, 4, 4]
    assert d["total_params"] == n_dense and d["seq_len"] == 128 and not d["pruned"]

    out_dir = tmp_path / "pruned"
    rc, out, err = cli(capsys, "reshape", "--model", ckpt, "--plan", write(tmp_path / "plan.json", PLAN),
                       "--out", out_dir, "--json")
    assert rc == 0, err
    d = json.loads(out)
    removed = 12 - 5
    assert d["heads"] == [12, 5] and d["heads_per_layer"] == [2, 0, 3]
    assert d["params"] == [n_dense, n_dense - removed * head_params(32, 8)]
    assert "12 -> 5 heads" in err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        ".cahp-edge-output", "cahp_heads.json", "config.json", "pruned_model.safetensors"]

    rc, out, _ = cli(capsys, "inspect", out_dir, "--json")
    d = json.loads(out)
    assert rc == 0 and d["pruned"] and d["heads"] == 5
    assert [c["heads"] for c in d["layers"]] == [2, 0, 3]
    assert d["total_params"] == n_dense - removed * head_params(32, 8)
    rc, out, _ = cli(capsys, "inspect", out_dir)
    assert rc == 0 and "cahp-pruned" in out and "total: 5 heads" in out

    # the CLI's output reloads to the same function as masking the dense model
    from cahp_edge.model.load import load_model
    from cahp_edge.model.mask import HeadMask
    from cahp_edge.plan import HeadPlan

    pruned = load_model(out_dir, require_tokenizer=False)
    batch = tiny_batch(dense)
    with torch.no_grad(), HeadMask(dense, pruned.adapter, HeadPlan.from_dict(PLAN).mask()):
        ref = dense(**batch).logits
    with torch.no_grad():
        got = pruned.model(**batch).logits
    assert (ref - got).abs().max().item() <= 1e-5
    no_leftovers(tmp_path, {"plan.json", "pruned"})


# ---- bad plans -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "needles"),
    [
        ({"num_heads": [4, 4, 4, 4], "kept": [[0], [1], [2], [3]]}, ["does not fit", "[4, 4, 4, 4]", "Fix:"]),
        ({"num_heads": [4, 4, 4], "kept": [[0], [9], [2]]}, ["head(s) [9] in layer 1", "0..3"]),
        ({"num_heads": [4, 4, 4], "kept": [[0], [1], [2], [3]]}, ["inconsistent"]),
        ({"num_heads": [4, 4, 4], "kept": [[0, 2, 0], [1], [2]]}, ["twice in layer 0"]),
        ('{"num_heads": [4, 4,', ["not valid JSON"]),
        ("\xff\xfe garbage", ["not valid JSON"]),
        ({"kept": [[0], [1], [2]]}, ["no 'num_heads'"]),
        ([[1, 0], [0, 1]], ["not a head plan"]),
    ],
    ids=["no-such-layer", "no-such-head", "extra-layer", "duplicate", "malformed", "binary", "no-field",
         "list"],
)
def test_bad_plan(ckpt, tmp_path, capsys, plan, needles):
    p = write(tmp_path / "plan.json", plan)
    rc, out, err = cli(capsys, "reshape", "--model", ckpt, "--plan", p, "--out", tmp_path / "out")
    assert_one_line_failure(rc, err, 1, *needles)
    assert out == ""
    no_leftovers(tmp_path, {"plan.json"})


def test_missing_plan_file(ckpt, tmp_path, capsys):
    rc, _, err = cli(capsys, "reshape", "--model", ckpt, "--plan", tmp_path / "nope.json",
                     "--out", tmp_path / "o")
    assert_one_line_failure(rc, err, 1, "plan file not found")
    no_leftovers(tmp_path, set())


# ---- bad checkpoints -------------------------------------------------------------------------------
def _broken(ckpt: Path, tmp_path: Path, kind: str) -> Path:
    d = tmp_path / kind
    shutil.copytree(ckpt, d)
    w = d / "model.safetensors"
    raw = w.read_bytes()
    if kind == "no-config":
        (d / "config.json").unlink()
    elif kind == "corrupt":
        w.write_bytes(bytes(b ^ 0x5A for b in raw[:64]) + raw[64:])
    elif kind == "truncated":
        w.write_bytes(raw[: len(raw) // 2])
    elif kind == "header-not-object":
        w.write_bytes(struct.pack("<Q", 2) + b"[]")
    elif kind == "empty-weights":
        w.write_bytes(b"")
    elif kind == "albert":
        write(d / "config.json", {"model_type": "albert", "num_attention_heads": 4})
    elif kind == "gpt2":
        write(d / "config.json", {"model_type": "gpt2", "n_head": 4})
    elif kind == "decoder":
        cfg = json.loads((d / "config.json").read_text())
        write(d / "config.json", {**cfg, "is_decoder": True})
    elif kind == "config-not-json":
        (d / "config.json").write_text("{model_type: bert")
    elif kind == "no-weights":
        w.unlink()
    return d


BROKEN = {
    "no-config": ["no config.json"],
    "corrupt": ["corrupt or truncated"],
    "truncated": ["corrupt or truncated", "re-copy"],
    "header-not-object": ["corrupt or truncated"],
    "empty-weights": ["corrupt or truncated"],
    "albert": ["'albert' is not supported", "bert, distilbert, electra, roberta, xlm-roberta"],
    "gpt2": ["'gpt2' is not supported", "supported families"],
    "decoder": ["decoder is not supported"],
    "config-not-json": ["not valid JSON"],
    "no-weights": ["no model weights"],
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_bad_checkpoint(ckpt, tmp_path, capsys, kind):
    src = _broken(ckpt, tmp_path, kind)
    plan = write(tmp_path / "plan.json", PLAN)
    rc, _, err = cli(capsys, "reshape", "--model", src, "--plan", plan, "--out", tmp_path / "out")
    assert_one_line_failure(rc, err, 1, *BROKEN[kind])
    rc, out, err = cli(capsys, "inspect", src)
    assert_one_line_failure(rc, err, 1, *BROKEN[kind])
    assert out == ""
    no_leftovers(tmp_path, {kind, "plan.json"})


def test_missing_model_folder(tmp_path, capsys):
    rc, _, err = cli(capsys, "inspect", tmp_path / "absent")
    assert_one_line_failure(rc, err, 1, "model folder not found")


def test_damaged_pruned_folder(ckpt, tmp_path, capsys):
    plan = write(tmp_path / "plan.json", PLAN)
    good = tmp_path / "pruned"
    assert cli(capsys, "reshape", "--model", ckpt, "--plan", plan, "--out", good)[0] == 0
    cases = {
        "heads-not-json": ("cahp_heads.json", lambda p: p.write_text('{"num_heads": ['), "not JSON"),
        "heads-edited": ("cahp_heads.json", lambda p: write(p, {**json.loads(p.read_text()),
                                                               "kept": [[0, 1, 3], [], [1, 2, 3]]}),
                         "do not match its cahp_heads.json"),
        "weights-truncated": ("pruned_model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:4000]),
                              "corrupt or truncated"),
        "weights-missing": ("pruned_model.safetensors", lambda p: p.unlink(), "missing from pruned model"),
    }
    for name, (fname, damage, needle) in cases.items():
        d = tmp_path / name
        shutil.copytree(good, d)
        damage(d / fname)
        rc, _, err = cli(capsys, "inspect", d)
        assert_one_line_failure(rc, err, 1, needle)

    # plans name heads of the dense model: re-reshaping a pruned folder is refused, not silently broken
    rc, _, err = cli(capsys, "reshape", "--model", good, "--plan", plan, "--out", tmp_path / "again")
    assert_one_line_failure(rc, err, 1, "already cahp-pruned")
    assert not (tmp_path / "again").exists()


# ---- output location and usage ---------------------------------------------------------------------
def test_output_exists_and_not_empty(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    plan = write(tmp_path / "plan.json", PLAN)
    rc, _, err = cli(capsys, "reshape", "--model", ckpt, "--plan", plan, "--out", out)
    assert_one_line_failure(rc, err, 1, "exists and is not empty", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    no_leftovers(tmp_path, {"out", "plan.json"})
    # --overwrite never replaces a folder cahp-edge did not make: the user's file stays
    rc, _, err = cli(capsys, "reshape", "--model", ckpt, "--plan", plan, "--out", out, "--overwrite")
    assert_one_line_failure(rc, err, 1, "was not created by cahp-edge", "move that folder's contents")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # an empty existing folder is fine, and --overwrite replaces one cahp-edge made
    (out / "keep.txt").unlink()
    assert cli(capsys, "reshape", "--model", ckpt, "--plan", plan, "--out", out)[0] == 0
    assert cli(capsys, "reshape", "--model", ckpt, "--plan", plan, "--out", out, "--overwrite")[0] == 0
    assert (out / "cahp_heads.json").is_file()
    no_leftovers(tmp_path, {"out", "plan.json"})


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["reshape", "--model", "m", "--plan", "p.json"], "Missing option '--out'"),
        (["inspect"], "Missing argument"),
        (["inspect", "m", "--seq-len", "0"], "--seq-len"),
        (["reshape", "--nope"], "No such option"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, needle):
    rc, _, err = cli(capsys, *argv)
    assert_one_line_failure(rc, err, 2, needle, "--help")


def test_debug_shows_the_exception(ckpt, tmp_path, capsys):
    with pytest.raises(CahpError, match="not valid JSON"):
        main(["--debug", "reshape", "--model", str(ckpt), "--plan", str(write(tmp_path / "p.json", "{")),
              "--out", str(tmp_path / "o")])


def test_real_process_stderr_is_one_line(ckpt, tmp_path):
    """Through a real interpreter: library warnings/progress bars would show up here, not under capsys."""
    src = _broken(ckpt, tmp_path, "truncated")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "cahp_edge", "inspect", str(src)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert_one_line_failure(r.returncode, r.stderr, 1, "corrupt or truncated")
    assert r.stdout == ""


def test_plan_folder_from_prune_is_accepted(ckpt, tmp_path, capsys):
    """`prune --out DIR` writes DIR/plan.json; `reshape --plan DIR` takes that folder as it is."""
    plan_dir = tmp_path / "plan"
    plan_dir.mkdir()
    write(plan_dir / "plan.json", PLAN)
    rc, out, err = cli(capsys, "reshape", "--model", ckpt, "--plan", plan_dir, "--out", tmp_path / "o",
                       "--json")
    assert rc == 0, err
    assert json.loads(out)["heads_per_layer"] == [2, 0, 3]
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(capsys, "reshape", "--model", ckpt, "--plan", tmp_path / "empty",
                     "--out", tmp_path / "o2")
    assert_one_line_failure(rc, err, 1, "plan file not found")
    assert not (tmp_path / "o2").exists()


def test_every_command_registers_without_torch_or_transformers():
    """`cahp-edge --help` stays instant: command modules and every options model are torch-free."""
    code = (
        "import json, sys\n"
        "import typer.main\n"
        "from cahp_edge.cli import register_commands\n"
        "from cahp_edge.cli.app import app\n"
        "register_commands()\n"
        "names = sorted(typer.main.get_command(app).commands)\n"
        "heavy = [m for m in ('torch', 'transformers', 'onnxruntime', 'onnx') if m in sys.modules]\n"
        "print(json.dumps({'commands': names, 'heavy': heavy}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["heavy"] == []
    assert got["commands"] == sorted(["build", "compare", "demo", "export", "finetune", "inspect", "optimize",
                                      "keygen", "optimum-env", "prune", "quantize", "recover", "reshape",
                                      "targets", "validate", "verify"])


def test_a_broken_command_module_fails_loudly(monkeypatch):
    """Commands are an explicit list: a module that fails to import is an error, never a missing command."""
    from cahp_edge import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "no_such_commands"))
    with pytest.raises(ModuleNotFoundError, match="no_such_commands"):
        cli.register_commands()


def _all_commands(group, path=()):
    yield path, group
    for name, cmd in getattr(group, "commands", {}).items():
        yield from _all_commands(cmd, (*path, name))


def test_help_reads_as_words_for_every_command():
    """At 100 columns: no `<bool>` types, arguments by NAME (not `{name}`), help text on every option."""
    try:
        from typer._click.testing import CliRunner
    except ImportError:  # pragma: no cover - typer on the real click
        from click.testing import CliRunner

    from cahp_edge import cli

    group = cli.command()
    seen = 0
    for path, cmd in _all_commands(group):
        options = [p for p in cmd.params if p.param_type_name == "option"]
        missing = [p.name for p in options if not getattr(p, "help", None)]
        assert not missing, f"`cahp-edge {' '.join(path)}`: options without help: {missing}"
        r = CliRunner().invoke(group, [*path, "--help"], env={"COLUMNS": "100", "TERM": "dumb"})
        assert r.exit_code == 0, r.output
        assert "<bool>" not in r.output and "<list[" not in r.output, (path, r.output)
        assert " range>" not in r.output and "[x>=" not in r.output, (path, r.output)  # ranges in words
        assert not re.search(r"\{[A-Za-z_]+\}", r.output), (path, r.output)  # MODEL, not {model} / {MODEL}
        seen += 1
    assert seen >= 18  # the root, 15 commands, the targets group and its 2 commands
    build = CliRunner().invoke(group, ["build", "--help"], env={"COLUMNS": "100", "TERM": "dumb"}).output
    flat = " ".join(build.replace("│", " ").split())  # rich wraps the help column inside a box
    assert "Default: 128." in flat and "Required, here or in --config." in flat  # not given = these apply


def test_every_command_has_a_place_in_the_pipeline_order():
    from cahp_edge import cli
    from cahp_edge.cli.app import app

    cli.register_commands()
    placed = [c for _, cmds in cli.PANELS for c in cmds]
    assert len(placed) == len(set(placed))
    names = [cli._name(i) for i in app.registered_commands + app.registered_groups]
    assert sorted(names) == sorted(placed)
    assert [cli._name(i) for i in app.registered_commands] == [c for c in placed if c != "targets"]


def test_reshape_applies_a_neuron_plan_and_reports_it(ckpt, tmp_path, capsys):
    plan = {**PLAN, "format": "cahp-plan/2", "num_neurons": [48, 48, 48],
            "kept_neurons": [list(range(0, 48, 2)), [], [5, 7, 9]]}
    dense = tiny_model("bert", num_labels=3, seed=5)
    n_dense = sum(p.numel() for p in dense.parameters())
    rc, out, err = cli(capsys, "reshape", "--model", ckpt, "--plan", write(tmp_path / "plan.json", plan),
                       "--out", tmp_path / "p", "--json")
    assert rc == 0, err
    d = json.loads(out)
    # one FFN neuron owns its up-projection row + bias and its down-projection column: 2 * 32 + 1
    neurons_removed = 3 * 48 - (24 + 0 + 3)
    assert d["neurons_per_layer"] == [24, 0, 3] and d["heads_per_layer"] == [2, 0, 3]
    assert d["params"] == [n_dense, n_dense - 7 * head_params(32, 8) - neurons_removed * (2 * 32 + 1)]
    assert "FFN neurons 144 -> 27 [24, 0, 3]" in err
    rc, out, _ = cli(capsys, "inspect", tmp_path / "p", "--json")
    assert rc == 0 and json.loads(out)["total_params"] == d["params"][1]
