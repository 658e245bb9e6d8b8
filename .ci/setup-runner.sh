#!/usr/bin/env bash
# A device-like environment for the release's own runner: onnxruntime, numpy and tokenizers only (the
# versions of the main environment), no torch, no transformers, no cahp-edge. Tests run a built
# release's `python -m cahp_edge_runtime`, run.py and its model-card snippet with it (issue 12).
# Idempotent: a stamp records what was installed.
#
#   bash .ci/setup-runner.sh      # then tests read CAHP_RUNNER_PYTHON from .ci/env
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv-runner"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1
HOST_PY="${CAHP_HOST_PYTHON:-$ROOT/.venv/bin/python}"

# the same versions the build measured with, so the runner's numbers can be compared exactly
PKGS=$("$HOST_PY" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("onnxruntime", "numpy", "tokenizers")))
PY
)
STAMP="$VENV/.cahp-runner-stamp"
if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PKGS" ]; then
  echo "setup-runner: $VENV up to date"
else
  echo "setup-runner: building $VENV ($PKGS)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  LOG="$VENV/.pip.log"
  # shellcheck disable=SC2086
  "$PY" -m pip install $PKGS >>"$LOG" 2>&1 || { cat "$LOG"; echo "setup-runner: pip failed" >&2; exit 1; }
  echo "$PKGS" > "$STAMP"
fi

# a device has none of these: fail loudly if a dependency dragged one in (run from / so the
# checkout itself is not on sys.path)
(cd / && "$PY" - <<'PY'
import importlib.util as u
present = [m for m in ("torch", "transformers", "cahp_edge", "optimum") if u.find_spec(m)]
assert not present, f"the runner environment must not have {present}"
import numpy, onnxruntime, tokenizers  # noqa: E401,F401
print(f"setup-runner: onnxruntime {onnxruntime.__version__}, numpy {numpy.__version__}, "
      f"tokenizers {tokenizers.__version__}")
PY
)

# shellcheck source=/dev/null
. "$ROOT/.ci/env-set.sh"
env_set CAHP_RUNNER_PYTHON "$PY"
