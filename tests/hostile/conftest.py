"""Fixtures of the hostile-input suite (tiny checkpoint, data, package); helpers are in support.py.

Every test here is marked ``slow``: the suite runs real CLI processes and builds (README's fast tier
skips it; the full suite and CI run it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)


# ---- tiny model and data ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_ckpt_master(tmp_path_factory) -> Path:
    """A 3-layer 4-head BERT classifier (neg/pos) with tokenizer, saved once per session."""
    from tests.helpers.build_tiny import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("hostile-ckpt") / "ckpt")


@pytest.fixture
def ckpt(tiny_ckpt_master, tmp_path) -> Path:
    """A private copy of the tiny checkpoint (tests damage it)."""
    return Path(shutil.copytree(tiny_ckpt_master, tmp_path / "ckpt"))


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    from tests.helpers.build_tiny import make_data

    return make_data(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_pkg_master(tmp_path_factory) -> Path:
    """An exported tiny model folder (model.onnx + tokenizer.json + config.json + eval.jsonl)."""
    from tests.helpers.tiny_package import make_tiny_package

    return make_tiny_package(tmp_path_factory.mktemp("hostile-pkg") / "pkg", n_eval=12)


@pytest.fixture
def onnx_pkg(tiny_pkg_master, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_pkg_master, tmp_path / "pkg"))
