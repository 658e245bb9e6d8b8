"""Hostile inputs to `cahp-edge export / optimize / quantize`: impossible opsets, damaged ONNX, contradictory
or under-fed quantization. One line, exit 1, no output folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.hostile.support import REPO, fails, fails_clean


@pytest.fixture(scope="module")
def exported_master(tiny_ckpt_master, tmp_path_factory) -> Path:
    from cahp_edge.cli import main

    out = tmp_path_factory.mktemp("hostile-export") / "onnx"
    assert main(["export", str(tiny_ckpt_master), "--out", str(out), "-q"]) == 0
    return out


@pytest.fixture
def exported(exported_master, tmp_path) -> Path:
    return Path(shutil.copytree(exported_master, tmp_path / "onnx"))


@pytest.mark.parametrize("opset", ["30", "9"])
def test_export_impossible_opset(opset, ckpt, tmp_path, capsys):
    fails_clean(
        ["export", ckpt, "--out", tmp_path / "x", "--opset", opset, "-q"],
        capsys,
        [f"opset {opset} cannot be produced", "--opset between"],
        tmp_path,
    )


def test_export_onto_non_empty_out(ckpt, tmp_path, capsys):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.onnx").write_bytes(b"mine")
    fails_clean(["export", ckpt, "--out", out, "-q"], capsys, "exists and is not empty", tmp_path)


def test_quantize_truncated_onnx(exported, tmp_path, capsys):
    m = exported / "model.onnx"
    m.write_bytes(m.read_bytes()[:5000])
    fails_clean(
        ["quantize", exported, "--target", "x86-64-avx2", "--out", tmp_path / "q", "-q"],
        capsys,
        ["fails to load", "truncated or corrupt"],
        tmp_path,
    )


def test_optimize_truncated_onnx(exported, tmp_path, capsys):
    m = exported / "model.onnx"
    m.write_bytes(m.read_bytes()[:5000])
    fails_clean(["optimize", exported, "--out", tmp_path / "o", "-q"], capsys, "fails to load", tmp_path)


def test_quantize_folder_not_from_export(onnx_pkg, tmp_path, capsys):
    fails_clean(
        ["quantize", onnx_pkg, "--target", "x86-64-avx2", "--out", tmp_path / "q", "-q"],
        capsys,
        "not a cahp-edge ONNX folder",
        tmp_path,
    )


def _static_target(tmp_path: Path, size: int | None = None) -> Path:
    text = (REPO / "targets" / "x86-64-avx2.toml").read_text().replace('mode = "dynamic"', 'mode = "static"')
    if size is not None:
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("calibration_size"))
        text = text.replace('mode = "static"', f'mode = "static"\ncalibration_size = {size}')
    p = tmp_path / "static.toml"
    p.write_text(text)
    return p


def test_static_quantization_without_calibration_data(exported, tmp_path, capsys):
    fails_clean(
        ["quantize", exported, "--target", _static_target(tmp_path), "--out", tmp_path / "q", "-q"],
        capsys,
        ["needs calibration data", "--calib-data"],
        tmp_path,
    )


def test_calibration_data_smaller_than_asked(exported, tiny_data, tmp_path, capsys):
    args = [
        "quantize",
        exported,
        "--target",
        _static_target(tmp_path, 500),
        "--out",
        tmp_path / "q",
        "-q",
        "--calib-data",
        tiny_data / "train.tsv",
    ]
    fails_clean(args, capsys, ["48 examples, fewer than the 500 asked", "calibration_size"], tmp_path)


def test_quantize_contradictory_target(exported, tmp_path, capsys):
    p = _static_target(tmp_path).read_text().replace('mode = "static"', 'mode = "dynamic"')
    p = p.replace('activation_type = "uint8"', 'activation_type = "int8"')
    # the test's own precondition, asserted (a skip here would hide the very regression it guards)
    assert 'activation_type = "int8"' in p and 'mode = "dynamic"' in p
    bad = tmp_path / "contradiction.toml"
    bad.write_text(p)
    fails(["targets", "show", bad], capsys, "dynamic quantization only supports uint8")
    fails_clean(
        ["quantize", exported, "--target", bad, "--out", tmp_path / "q", "-q"],
        capsys,
        "dynamic quantization only supports uint8",
        tmp_path,
    )
