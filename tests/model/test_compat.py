"""transformers 4.57.x compatibility (what optimum-onnx requires), run from the main 5.x suite.

    bash .ci/setup-compat.sh && set -a && . .ci/env && set +a
    python -m pytest tests/model/test_compat.py

The compat interpreter (CAHP_COMPAT_PYTHON, written to .ci/env by .ci/setup-compat.sh) runs the
reshape/mask/save/load suite itself, and pruned folders cross between the two versions both ways.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cahp_edge.model.load import load_pruned, save_pruned
from cahp_edge.model.reshape import reshape
from tests.helpers.tiny import TINY_CONFIGS, tiny_batch, tiny_model

REPO = Path(__file__).resolve().parents[2]
COMPAT = os.environ.get("CAHP_COMPAT_PYTHON", "")
# same weights and torch; measured 0.0, the margin is for the two versions' attention code
CROSS_ATOL = 1e-6

pytestmark = pytest.mark.skipif(
    not (COMPAT and os.access(COMPAT, os.X_OK)),
    reason="CAHP_COMPAT_PYTHON is not set to an interpreter "
    "(run `bash .ci/setup-compat.sh`, then source .ci/env)",
)


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="1")
    return subprocess.run([COMPAT, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)


def test_reshape_suite_passes_on_transformers_457():
    r = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/model/test_reshape.py")
    tail = (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, f"reshape suite failed under {COMPAT}:\n{tail}"
    assert " passed" in r.stdout and " failed" not in r.stdout, tail


def test_pruned_folders_cross_versions(tmp_path):
    """Saved on 5.x -> load_pruned on 4.57, and saved on 4.57 -> load_pruned on 5.x: same logits."""
    from tests.compat.cross_version import plan_for
    from tests.helpers.tiny import spread

    torch.set_num_threads(1)
    expected = {}
    for family in sorted(TINY_CONFIGS):
        d = tmp_path / "from_main" / family
        d.mkdir(parents=True)
        model = spread(tiny_model(family, num_labels=3, seed=13))
        plan = plan_for(model)
        pruned = reshape(model, plan)
        save_pruned(pruned, plan, d / "pruned")
        batch = tiny_batch(model)
        np.savez(d / "inputs.npz", **{k: v.numpy() for k, v in batch.items()})
        with torch.no_grad():
            expected[family] = pruned(**batch).logits.numpy()

    r = _run("-m", "tests.compat.cross_version", str(tmp_path), timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["transformers"].startswith("4.57."), info
    assert info["loaded"] == info["saved"] == sorted(TINY_CONFIGS)

    for family, want in expected.items():  # 5.x -> 4.57
        got = np.load(tmp_path / "from_main" / family / "logits_here.npy")
        assert np.abs(got - want).max() <= CROSS_ATOL, f"{family}: {np.abs(got - want).max():.3g}"
    for family in sorted(TINY_CONFIGS):  # 4.57 -> 5.x
        d = tmp_path / "from_here" / family
        lm = load_pruned(d / "pruned")
        assert lm.source_hash == f"compat-{family}"
        batch = {k: torch.from_numpy(v) for k, v in np.load(d / "inputs.npz").items()}
        with torch.no_grad():
            got = lm.model(**batch).logits.numpy()
        want = np.load(d / "logits.npy")
        assert np.abs(got - want).max() <= CROSS_ATOL, f"{family}: {np.abs(got - want).max():.3g}"
