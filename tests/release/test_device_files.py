"""A release runs on a device with what it contains: its runner package, run.py and the model card's
snippet, executed in an environment holding only onnxruntime, numpy and tokenizers (.ci/setup-runner.sh
builds it; CI always does), must reproduce the build's numbers on the same examples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cahp_edge.release.package import check_files, read_sums

pytestmark = pytest.mark.slow  # uses the session's tiny pair-task build

REPO = Path(__file__).resolve().parents[2]
RUNNER_FILES = {f"cahp_edge_runtime/{n}.py" for n in ("__init__", "__main__", "package", "profile", "sysinfo",
                                                      "tokenize")} | {"run.py"}


def runner_python() -> str:
    py = os.environ.get("CAHP_RUNNER_PYTHON", "")
    env = REPO / ".ci" / "env"
    if not py and env.is_file():
        py = next((ln.split("=", 1)[1].strip() for ln in env.read_text().splitlines()
                   if ln.startswith("CAHP_RUNNER_PYTHON=")), "")
    if not py or not Path(py).exists():
        pytest.skip("CAHP_RUNNER_PYTHON is not set: run `bash .ci/setup-runner.sh` (a venv with only "
                    "onnxruntime, numpy and tokenizers; .ci/run always builds it)")
    return py


def _run(py: str, cwd: Path, *args: str) -> str:
    # nothing of the host's PYTHONPATH (only the release's files import); bytecode written as on a device
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    r = subprocess.run([py, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, f"{args}: {r.stderr[-2000:]}"
    return r.stdout


def test_release_lists_the_runner_and_example(pair_release):
    _, rel = pair_release
    sums = read_sums(rel)
    assert set(sums) >= RUNNER_FILES
    # the runner is the host's runtime, byte for byte (one source of truth for how numbers are measured)
    for name in RUNNER_FILES - {"run.py"}:
        src = REPO / "cahp_edge" / "runtime" / name.split("/", 1)[1]
        assert (rel / name).read_bytes() == src.read_bytes(), name


def test_runner_run_py_and_card_snippet_on_a_torch_free_device(pair_release, tmp_path):
    py = runner_python()
    _, built = pair_release
    rel = tmp_path / "host"
    shutil.copytree(built, rel)
    assert _run(py, tmp_path, "-c", "import importlib.util as u; print([m for m in ('torch', 'transformers', "
                "'cahp_edge') if u.find_spec(m)])").strip() == "[]"

    metrics = json.loads((rel / "metrics.json").read_text())
    prof = json.loads(_run(py, rel, "-m", "cahp_edge_runtime", "profile", ".", "--json", "--runs", "2",
                           "--no-operators"))
    acc = prof["accuracy"]
    assert acc["accuracy"] == metrics["models"]["shipped"]["accuracy"]
    assert acc["predictions"] == metrics["raw"]["shipped"]["profile"]["accuracy"]["predictions"]
    assert acc["batching"] == "length-sorted batches of 16, each padded to its longest row"
    assert prof["model"]["checksums_verified"] == len(read_sums(rel))

    # run.py batches like the runner: the same predictions, mapped to label names
    id2label = json.loads((rel / "config.json").read_text())["id2label"]
    out = [json.loads(line) for line in _run(py, rel, "run.py", "--file", "eval.jsonl").splitlines()]
    assert [r["label"] for r in out] == [id2label[str(p)] for p in acc["predictions"]]
    assert all(abs(sum(r["scores"].values()) - 1) < 1e-4 and r["score"] == max(r["scores"].values())
               for r in out)

    # the model card's snippet, as written, classifies the first eval row like run.py does for that row
    card = (rel / "MODEL_CARD.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    first = json.loads((rel / "eval.jsonl").read_text().splitlines()[0])
    assert repr(first["text_pair"]) in snippet  # a pair task: the snippet encodes both sentences
    one = json.loads(_run(py, rel, "run.py", first["text"], first["text_pair"]))
    assert _run(py, rel, "-c", snippet).strip() == one["label"]

    # running in place leaves only bytecode behind, which verification tolerates
    assert list(rel.glob("cahp_edge_runtime/__pycache__/*.pyc"))
    assert check_files(rel) == len(read_sums(rel))
