"""`cahp-edge export / optimize / quantize` end to end on a saved tiny pruned checkpoint."""

from __future__ import annotations

import json

import pytest

from cahp_edge.cli import main
from tests.helpers.export_helpers import pruned_tiny


def _run(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from cahp_edge.model.load import save_pruned

    model, plan = pruned_tiny("bert")
    d = tmp_path_factory.mktemp("ckpt") / "pruned"
    save_pruned(model, plan, d)
    return d


def test_cli_export_optimize_quantize(checkpoint, tmp_path, capsys):
    code, out, err = _run(capsys, "export", str(checkpoint), "--out", str(tmp_path / "e"), "--optimize",
                          "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["heads_per_layer"] == [2, 0, 3] and d["optimized"]["fused_heads"] == [2, 0, 3]
    assert "max |ORT - torch|" in err
    code, out, err = _run(capsys, "quantize", str(tmp_path / "e-optimized"), "--target", "x86-64-avx2",
                          "--out", str(tmp_path / "q"), "--json")
    assert code == 0, err
    q = json.loads(out)
    assert q["quantized_matmuls"] == 12 and q["target"] == "x86-64-avx2"


def test_cli_bad_opset_one_line(checkpoint, tmp_path, capsys):
    code, out, err = _run(capsys, "export", str(checkpoint), "--out", str(tmp_path / "e"), "--opset", "30")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: opset 30 cannot be produced")
    assert not (tmp_path / "e").exists()


def test_cli_opset_and_target_conflict(checkpoint, tmp_path, capsys):
    code, _, err = _run(capsys, "export", str(checkpoint), "--out", str(tmp_path / "e"), "--opset", "17",
                        "--target", "x86-64-avx2")
    assert code == 2 and "pass only one of them" in err


def test_cli_quantize_unknown_target(checkpoint, tmp_path, capsys):
    code, _, err = _run(capsys, "quantize", str(tmp_path), "--target", "no-such-target", "--out",
                        str(tmp_path / "q"))
    assert code != 0 and err.startswith("error:") and "no-such-target" in err
