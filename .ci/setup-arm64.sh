#!/usr/bin/env bash
# ARM64 emulation for tests/targets/test_emulate.py (issue 5): qemu-aarch64 + arm64 Python 3.11 + aarch64
# onnxruntime/numpy/tokenizers, built by the script the project ships. Idempotent (the shipped
# script skips finished steps); ~30 s from scratch here, ~5 s when up to date.
#
#   bash .ci/setup-arm64.sh      # then tests read CAHP_ARM64_ROOT from .ci/env
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ARM_ROOT=${CAHP_ARM64_ROOT:-$REPO/.cahp-cache/arm64}  # .cahp-cache/ is gitignored
PY=${PYTHON:-$(command -v python || command -v python3)}
# one retry for a mirror hiccup; a second failure fails CI loudly rather than skipping the ARM check
PYTHON=$PY bash scripts/setup-arm64-emulation.sh "$ARM_ROOT" ||
  { echo "setup-arm64: retrying once"; sleep 5; PYTHON=$PY bash scripts/setup-arm64-emulation.sh "$ARM_ROOT"; }

# shellcheck source=/dev/null
. "$REPO/.ci/env-set.sh"
env_set CAHP_ARM64_ROOT "$ARM_ROOT"
