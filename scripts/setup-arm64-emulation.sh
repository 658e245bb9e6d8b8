#!/usr/bin/env bash
# scripts/setup-arm64-emulation.sh ROOT
#
# Builds everything `cahp_edge.targets.emulate` needs to run the aarch64 ONNX Runtime on an x86-64 Linux
# host under user-mode QEMU, inside ROOT (no root, binfmt or system apt changes needed):
#   ROOT/qemu-aarch64   static user-mode QEMU from Debian 13's qemu-user (10.x). It fakes an ARM
#                       /proc/cpuinfo itself; Debian 12's 7.2 lets ORT read the host's x86 cpuinfo
#                       and segfault, so only with CAHP_QEMU_SUITE=bookworm do we write a fake one.
#   ROOT/rootfs/        arm64 Python 3.11 userland from Debian 12 (apt-get download + dpkg -x).
#   ROOT/site/          aarch64 wheels: onnxruntime (same version as the host's), numpy, tokenizers.
# Package indexes live in private apt state folders under ROOT/.apt-*, so the system's
# /etc/apt, dpkg architectures and lists are never touched. Idempotent: each step leaves a stamp
# and is skipped when its stamp matches; delete ROOT to start over.
#
# Environment: PYTHON (host python with pip; default python3), CAHP_DEBIAN_MIRROR
# (default http://deb.debian.org/debian), CAHP_QEMU_SUITE (trixie | bookworm).
set -euo pipefail

ROOT=${1:?usage: $0 ROOT}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
PYTHON=${PYTHON:-python3}
MIRROR=${CAHP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
QEMU_SUITE=${CAHP_QEMU_SUITE:-auto}  # auto: trixie, else bookworm (with the fake cpuinfo below)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
T0=$(date +%s)
log() { echo "setup-arm64: $*"; }

# ORT version: the host's, so an x86-vs-ARM difference is a kernel difference, not a release one.
ORT_VERSION=${CAHP_ORT_VERSION:-$("$PYTHON" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null || true)}
NUMPY_VERSION=$("$PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
TOK_VERSION=$("$PYTHON" -c 'import tokenizers; print(tokenizers.__version__)' 2>/dev/null || true)
WHEELS="onnxruntime${ORT_VERSION:+==$ORT_VERSION} numpy${NUMPY_VERSION:+==$NUMPY_VERSION}"
# tokenizers without its dependencies: the runner needs only the Rust core, not huggingface_hub
TOK="tokenizers${TOK_VERSION:+==$TOK_VERSION}"

# private_apt NAME SUITE ARCH: an apt-get wrapper with its own lists, cache and empty dpkg status.
private_apt() {
  local name=$1 suite=$2 arch=$3 dir="$ROOT/.apt-$1"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/etc/sources.list.d" \
    "$dir/etc/preferences.d" "$dir/etc/apt.conf.d"
  : >"$dir/status"
  echo "deb [signed-by=$KEYRING] $MIRROR $suite main" >"$dir/etc/sources.list"
  APT_ARGS=(-q -o "Dir::State=$dir" -o "Dir::State::Lists=$dir/lists" -o "Dir::State::status=$dir/status"
    -o "Dir::Cache=$dir/cache" -o "Dir::Etc=$dir/etc" -o "Dir::Etc::SourceList=$dir/etc/sources.list"
    -o "Dir::Etc::SourceParts=$dir/etc/sources.list.d" -o "Dir::Etc::Parts=$dir/etc/apt.conf.d"
    -o "Dir::Etc::PreferencesParts=$dir/etc/preferences.d" -o "Dir::Etc::TrustedParts=/etc/apt/trusted.gpg.d"
    -o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o "Acquire::Languages=none"
    -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
  if [ -z "$(find "$dir/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null)" ]; then
    apt-get "${APT_ARGS[@]}" update >/dev/null || return 1
    [ -n "$(find "$dir/lists" -maxdepth 1 -name '*Packages*')" ] || return 1  # apt warns, exits 0
  fi
  log "apt index $name ($suite/$arch) ready"
}

stamp_ok() { [ -f "$ROOT/.stamp-$1" ] && [ "$(cat "$ROOT/.stamp-$1")" = "$2" ]; }
stamp_set() { echo "$2" >"$ROOT/.stamp-$1"; }

# --- 1. qemu-aarch64 ---------------------------------------------------------------------------
fetch_qemu() {  # fetch_qemu SUITE: the static qemu-aarch64 of that Debian release into ROOT
  local suite=$1 pkg=qemu-user tmp bin
  [ "$suite" = bookworm ] && pkg=qemu-user-static  # trixie's qemu-user holds the static binaries
  private_apt "qemu-$suite" "$suite" amd64 || return 1
  tmp=$(mktemp -d "$ROOT/.qemu.XXXX")
  (cd "$tmp" && apt-get "${APT_ARGS[@]}" download "$pkg" >/dev/null) || { rm -rf "$tmp"; return 1; }
  dpkg -x "$tmp"/*.deb "$tmp/x"
  bin=$(find "$tmp/x/usr/bin" \( -name 'qemu-aarch64' -o -name 'qemu-aarch64-static' \) -type f | head -1)
  [ -n "$bin" ] || { echo "setup-arm64: no qemu-aarch64 in $pkg" >&2; rm -rf "$tmp"; return 1; }
  install -m 0755 "$bin" "$ROOT/qemu-aarch64"
  rm -rf "$tmp"
  echo "$suite" >"$ROOT/.qemu-suite"
}
if ! stamp_ok qemu "$QEMU_SUITE" || [ ! -x "$ROOT/qemu-aarch64" ]; then
  if [ "$QEMU_SUITE" = auto ]; then
    fetch_qemu trixie || { log "Debian 13 qemu-user unavailable; using Debian 12 qemu-user-static"; fetch_qemu bookworm; }
  else
    fetch_qemu "$QEMU_SUITE"
  fi
  stamp_set qemu "$QEMU_SUITE"
fi
QEMU_FROM=$(cat "$ROOT/.qemu-suite")
log "$("$ROOT/qemu-aarch64" --version | head -1)"

# --- 2. arm64 Python 3.11 userland -------------------------------------------------------------
ROOTFS_PKGS="python3.11 libstdc++6 libgcc-s1"
if ! stamp_ok rootfs "$ROOTFS_PKGS" || [ ! -x "$ROOT/rootfs/usr/bin/python3.11" ]; then
  private_apt rootfs-bookworm bookworm arm64
  # An empty dpkg status makes --download-only fetch the whole dependency closure.
  # shellcheck disable=SC2086
  apt-get "${APT_ARGS[@]}" -y --no-install-recommends install --download-only $ROOTFS_PKGS >/dev/null
  rm -rf "$ROOT/rootfs.new" && mkdir -p "$ROOT/rootfs.new"
  n=0
  for deb in "$ROOT/.apt-rootfs-bookworm/cache/archives/"*.deb; do
    dpkg -x "$deb" "$ROOT/rootfs.new"
    n=$((n + 1))
  done
  rm -rf "$ROOT/rootfs" && mv "$ROOT/rootfs.new" "$ROOT/rootfs"
  rm -f "$ROOT/.apt-rootfs-bookworm/cache/archives/"*.deb  # unpacked; the stamp keeps them from coming back
  log "unpacked $n arm64 packages into rootfs"
  stamp_set rootfs "$ROOTFS_PKGS"
fi
if [ "$QEMU_FROM" = bookworm ]; then
  # qemu 7.2 passes the host's /proc/cpuinfo through; ORT's cpuinfo then crashes. qemu looks
  # under -L first, so give it a plausible ARM one (features come from HWCAP, set by -cpu).
  mkdir -p "$ROOT/rootfs/proc"
  printf 'processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' \
    >"$ROOT/rootfs/proc/cpuinfo"
else
  rm -f "$ROOT/rootfs/proc/cpuinfo"  # qemu 10 writes its own, matching -cpu
fi

# --- 3. aarch64 wheels -------------------------------------------------------------------------
if ! stamp_ok site "$WHEELS $TOK" || [ ! -d "$ROOT/site/onnxruntime" ]; then
  rm -rf "$ROOT/site.new"
  # manylinux_2_28 alone misses protobuf's wheel; list the older tags as well.
  # shellcheck disable=SC2086
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-compile --target "$ROOT/site.new" \
    --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
    $WHEELS
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-compile --target "$ROOT/site.new" \
    --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
    --no-deps "$TOK"
  rm -rf "$ROOT/site" && mv "$ROOT/site.new" "$ROOT/site"
  stamp_set site "$WHEELS $TOK"
fi
log "wheels: $WHEELS $TOK"

# --- 4. smoke test: the emulated interpreter imports ORT on a pinned core -----------------------
out=$(QEMU_CPU=cortex-a72 PYTHONPATH="$ROOT/site" PYTHONNOUSERSITE=1 \
  "$ROOT/qemu-aarch64" -L "$ROOT/rootfs" "$ROOT/rootfs/usr/bin/python3.11" -S -c \
  'import platform, onnxruntime, numpy, tokenizers; print(platform.machine(), onnxruntime.__version__, numpy.__version__, tokenizers.__version__)')
log "emulated python: $out"
case "$out" in aarch64*) ;; *) echo "setup-arm64: smoke test failed: $out" >&2; exit 1 ;; esac
log "ready in $(($(date +%s) - T0)) s: export CAHP_ARM64_ROOT=$ROOT"
