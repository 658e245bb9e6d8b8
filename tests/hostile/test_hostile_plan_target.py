"""Hostile head plans (`cahp-edge reshape`) and target profiles (`cahp-edge targets show`, `validate`)."""

from __future__ import annotations

import json

import pytest

from tests.hostile.support import fails_clean

# ---- head plans: the tiny checkpoint has 3 layers x 4 heads -------------------------------------------
PLANS = {
    "malformed_json": ('{"num_heads": [4, 4, 4], "kept": [[0], [1]', "is not valid JSON"),
    "not_utf8": (b"\xff\xfe{}", "is not valid JSON"),
    "not_an_object": ("[[0, 1], [2]]", "is not a head plan"),
    "no_kept": ('{"num_heads": [4, 4, 4]}', "has no 'kept' field"),
    "num_heads_strings": ('{"num_heads": ["4", 4, 4], "kept": [[0], [1], [2]]}', "list of positive integers"),
    "kept_floats": ('{"num_heads": [4, 4, 4], "kept": [[0.5], [1], [2]]}', "list of lists of head indices"),
    "kept_bools": ('{"num_heads": [4, 4, 4], "kept": [[true], [1], [2]]}', "list of lists of head indices"),
    "head_out_of_range": ('{"num_heads": [4, 4, 4], "kept": [[0], [9], [2]]}', "head(s) [9] in layer 1"),
    "negative_head": ('{"num_heads": [4, 4, 4], "kept": [[-1], [1], [2]]}', "head(s) [-1] in layer 0"),
    "duplicate_head": (
        '{"num_heads": [4, 4, 4], "kept": [[0, 0], [1], [2]]}',
        "names a head twice in layer 0",
    ),
    "layer_count_mismatch": ('{"num_heads": [4, 4, 4], "kept": [[0], [1]]}', "2 layers of kept heads but 3"),
    "plan_for_other_model": ('{"num_heads": [12, 12], "kept": [[0], [1]]}', "does not fit this model"),
    "heads_per_layer_differs": (
        '{"num_heads": [4, 4, 6], "kept": [[0], [1], [5]]}',
        "does not fit this model",
    ),
    # FFN-neuron fields (cahp-plan/2, issue 15): malformed ones are named; a valid neuron plan made for
    # another model's FFN is refused with both widths
    "unknown_format": ('{"format": "cahp-plan/9", "num_heads": [4, 4, 4], "kept": [[0], [1], [2]]}',
                       "has format 'cahp-plan/9'"),
    "neurons_without_widths": ('{"num_heads": [4, 4, 4], "kept": [[0], [1], [2]], '
                               '"kept_neurons": [[0], [], [1]]}',
                               "'num_neurons' must be a list of positive integers"),
    "neuron_out_of_range": ('{"num_heads": [4, 4, 4], "kept": [[0], [1], [2]], "num_neurons": [8, 8, 8], '
                            '"kept_neurons": [[0], [9], [1]]}', "FFN neuron(s) [9] in layer 1"),
    "neuron_twice": ('{"num_heads": [4, 4, 4], "kept": [[0], [1], [2]], "num_neurons": [8, 8, 8], '
                     '"kept_neurons": [[0, 0], [], [1]]}', "names an FFN neuron twice in layer 0"),
    "neuron_layers_mismatch": ('{"num_heads": [4, 4, 4], "kept": [[0], [1], [2]], "num_neurons": [8, 8], '
                               '"kept_neurons": [[0], []]}', "but 2 FFN widths"),
    "neuron_floats": ('{"num_heads": [4, 4, 4], "kept": [[0], [1], [2]], "num_neurons": [8, 8, 8], '
                      '"kept_neurons": [[0.5], [], [1]]}', "list of lists of neuron indices"),
    "neuron_plan_other_model": ('{"format": "cahp-plan/2", "num_heads": [4, 4, 4], "kept": [[0], [1], [2]], '
                                '"num_neurons": [8, 8, 8], "kept_neurons": [[0, 3], [], [1]]}',
                                "plan expects FFN widths [8, 8, 8], model has [48, 48, 48]"),
}


@pytest.mark.parametrize("case", list(PLANS))
def test_hostile_plan(case, ckpt, tmp_path, capsys):
    text, msg = PLANS[case]
    plan = tmp_path / "plan.json"
    plan.write_bytes(text if isinstance(text, bytes) else text.encode())
    fails_clean(
        ["reshape", "--model", ckpt, "--plan", plan, "--out", tmp_path / "pruned"], capsys, msg, tmp_path
    )


def test_plan_file_missing(ckpt, tmp_path, capsys):
    args = ["reshape", "--model", ckpt, "--plan", tmp_path / "nope.json", "--out", tmp_path / "pruned"]
    fails_clean(args, capsys, "plan file not found", tmp_path)


def test_pruned_model_given_as_dense(ckpt, tmp_path, capsys):
    """Reshaping an already-pruned folder again: refused (head indices would not stack)."""
    from tests.hostile.support import run_cli

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"num_heads": [4, 4, 4], "kept": [[0, 1], [], [3]]}))
    r = run_cli(["reshape", "--model", ckpt, "--plan", plan, "--out", tmp_path / "pruned"], capsys)
    assert r.code == 0, r.err
    fails_clean(
        ["reshape", "--model", tmp_path / "pruned", "--plan", plan, "--out", tmp_path / "again"],
        capsys,
        "already cahp-pruned",
        tmp_path,
    )


# ---- target profiles ----------------------------------------------------------------------------------
GOOD = """
name = "mine"
description = "test profile"
arch = "x86_64"
cpu = "generic"
isa_features = ["avx2"]
execution_providers = ["CPUExecutionProvider"]
threads = 1
opset = 17
optimize = true
formats = ["onnx"]

[quantization]
mode = "dynamic"
per_channel = true
reduce_range = false
activation_type = "uint8"
weight_type = "int8"
why = "test"

[benchmark]
batch = 1
seq_len = 16
warmup = 1
runs = 3

[budgets]
max_accuracy_drop = 0.01
p90_latency_ms = 50.0
max_size_mb = 10.0
max_peak_memory_mb = 500.0
"""

TARGETS = {
    "malformed_toml": (GOOD.replace("opset = 17", 'opset = "17'), "is not valid TOML"),
    "unknown_key": (GOOD.replace("threads = 1", "threads = 1\nturbo = true"), "unknown key 'turbo'"),
    "unknown_nested_key": (
        GOOD.replace("runs = 3", "runs = 3\niterations = 9"),
        "unknown key 'benchmark.iterations'",
    ),
    "missing_key": (GOOD.replace("opset = 17\n", ""), "missing key 'opset'"),
    "wrong_type": (GOOD.replace("threads = 1", 'threads = "four"'), "key 'threads'"),
    "unknown_arch": (GOOD.replace('arch = "x86_64"', 'arch = "riscv"'), "key 'arch'"),
    "zero_latency_budget": (GOOD.replace("p90_latency_ms = 50.0", "p90_latency_ms = 0.0"), "p90_latency_ms"),
    "negative_size_budget": (GOOD.replace("max_size_mb = 10.0", "max_size_mb = -1.0"), "max_size_mb"),
    "accuracy_drop_over_100pct": (
        GOOD.replace("max_accuracy_drop = 0.01", "max_accuracy_drop = 1.5"),
        "max_accuracy_drop",
    ),
    "zero_runs": (GOOD.replace("runs = 3", "runs = 0"), "benchmark.runs"),
    "contradictory_quantization": (
        GOOD.replace('activation_type = "uint8"', 'activation_type = "int8"'),
        "dynamic quantization only supports uint8",
    ),
    "no_cpu_fallback": (
        GOOD.replace('["CPUExecutionProvider"]', '["XnnpackExecutionProvider"]'),
        "must end with",
    ),
    "opset_too_old": (GOOD.replace("opset = 17", "opset = 7"), "key 'opset'"),
    "toml_not_utf8": (b'name = "\xff\xfe"\n', "cannot read target profile"),
}


@pytest.mark.parametrize("case", list(TARGETS))
def test_hostile_target_profile(case, tmp_path, capsys):
    text, msg = TARGETS[case]
    p = tmp_path / "mine.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    fails_clean(["targets", "show", p], capsys, msg, tmp_path)


def test_good_profile_is_accepted(tmp_path, capsys):
    from tests.hostile.support import run_cli

    p = tmp_path / "mine.toml"
    p.write_text(GOOD)
    r = run_cli(["targets", "show", p, "--json"], capsys)
    assert r.code == 0, r.err
    assert json.loads(r.out)["budgets"]["p90_latency_ms"] == 50.0


def test_unknown_target_name_lists_known(tmp_path, capsys):
    line = fails_clean(
        ["targets", "show", "pi-zero"], capsys, ["unknown target 'pi-zero'", "known targets"], tmp_path
    )
    assert "rpi4-arm64" in line and "x86-64-avx2" in line


def test_target_file_missing(tmp_path, capsys):
    fails_clean(["targets", "show", tmp_path / "gone.toml"], capsys, "not found", tmp_path)


def test_validate_with_malformed_target(onnx_pkg, tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text(GOOD.replace("threads = 1", "threads = 1\nturbo = true"))
    fails_clean(["validate", onnx_pkg, "-q", "--target", p], capsys, "unknown key 'turbo'", tmp_path)
