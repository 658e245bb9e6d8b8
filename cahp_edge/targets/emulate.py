"""ARM64 numerics under emulation: the aarch64 ONNX Runtime under user-mode QEMU, compared with x86.

    bash scripts/setup-arm64-emulation.sh ~/.cache/cahp-edge/arm64
    export CAHP_ARM64_ROOT=~/.cache/cahp-edge/arm64

then ``compare_with_host(model.onnx, examples, labels, cpu=target.cpu)`` (validate.py does this for
an aarch64 target). int8 GEMM kernels differ between x86 and ARM, so accuracy can move on one and
not the other; emulation shows the ARM numbers without a device. It says nothing about speed:
emulated int8 runs ~65x slower than native, and every time recorded here is labelled as emulated.

The emulated core is always pinned (``-cpu cortex-a72`` for a Pi 4, ``cortex-a76`` for a Pi 5):
QEMU's default ``max`` enables SME, ORT then picks other GEMM kernels than any Pi runs (and with
qemu 7.2 they gave wrong int8 results).

Examples are tokenized on the host (tokenization does not depend on the CPU), sorted by length and
padded per batch (as the runner batches), so the slow emulated run does no work on padding it does not need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cahp_edge.errors import TargetError, ValidateError
from cahp_edge.runtime import EVAL_BATCH_SIZE  # the batching every accuracy is measured with

ENV_ROOT = "CAHP_ARM64_ROOT"
SETUP_SCRIPT = "scripts/setup-arm64-emulation.sh"
WORKER = Path(__file__).with_name("emulate_worker.py")
EMULATED_TIME_NOTE = "wall time under QEMU emulation on this host; not a device latency"

Example = Mapping[str, Sequence[int]]  # one tokenized example: input_ids, attention_mask[, token_type_ids]


@dataclass(frozen=True)
class Arm64Env:
    root: Path
    qemu: Path
    rootfs: Path
    site: Path

    @property
    def python(self) -> Path:
        return self.rootfs / "usr/bin/python3.11"

    def command(self, cpu: str, *args: str) -> list[str]:
        return [str(self.qemu), "-cpu", check_cpu(cpu), "-L", str(self.rootfs), str(self.python), *args]

    def environ(self, cpu: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_", "VIRTUAL_ENV"))}
        # QEMU_CPU as well as -cpu, so a child process the runner starts keeps the pinned core
        env.update(
            QEMU_CPU=check_cpu(cpu),
            PYTHONPATH=str(self.site),
            PYTHONNOUSERSITE="1",
            PYTHONDONTWRITEBYTECODE="1",
            OMP_NUM_THREADS="1",
        )
        return env


def check_cpu(cpu: str) -> str:
    """Refuse QEMU's default core: `max` turns on SME and ORT then runs kernels no target has."""
    parts = [p.strip() for p in cpu.split(",")]
    if not parts[0] or (parts[0] == "max" and "sme=off" not in parts):
        raise TargetError(
            f"emulated CPU {cpu!r} is not pinned to a real core",
            "QEMU's 'max' enables SME and ONNX Runtime then picks GEMM kernels no Pi or phone runs",
            "set the target profile's cpu to the device's core, e.g. cortex-a72 (Pi 4) or cortex-a76 (Pi 5)",
        )
    return cpu


def find_env(root: str | Path | None = None) -> Arm64Env:
    """The emulation folder from ``root`` or $CAHP_ARM64_ROOT, checked to be complete."""
    raw = root if root is not None else os.environ.get(ENV_ROOT)
    fix = f"run 'bash {SETUP_SCRIPT} DIR' and set {ENV_ROOT}=DIR"
    if not raw:
        raise ValidateError("ARM64 emulation is not set up", f"{ENV_ROOT} is not set", fix)
    r = Path(raw).expanduser()
    env = Arm64Env(r, r / "qemu-aarch64", r / "rootfs", r / "site")
    missing = [str(p) for p in (env.qemu, env.python, env.site / "onnxruntime") if not p.exists()]
    if missing:
        raise ValidateError(f"ARM64 emulation folder {r} is incomplete", f"missing {', '.join(missing)}", fix)
    return env


# --- batching -------------------------------------------------------------------------------------


def make_batches(
    examples: Sequence[Example], batch_size: int, pad_id: int = 0
) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
    """Length-sorted batches padded to their own longest example.

    Returns (indices of each batch into ``examples``, arrays of each batch). Padding uses ``pad_id``
    for input_ids and 0 elsewhere (attention_mask 0 hides it).
    """
    if batch_size < 1:
        raise ValidateError("batch size must be at least 1", f"got {batch_size}", "pass batch_size >= 1")
    if not examples:
        raise ValidateError(
            "no examples to evaluate", "the evaluation set is empty", "pass a non-empty split"
        )
    lengths = np.array([len(ex["input_ids"]) for ex in examples])
    order = np.argsort(lengths, kind="stable")
    keys = list(examples[0].keys())
    index_batches, arrays = [], []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = int(lengths[idx].max())
        batch = {}
        for k in keys:
            fill = pad_id if k == "input_ids" else 0
            a = np.full((len(idx), width), fill, dtype=np.int64)  # (B, T)
            for row, i in enumerate(idx):
                seq = examples[i][k]
                a[row, : len(seq)] = seq
            batch[k] = a
        index_batches.append(idx)
        arrays.append(batch)
    return index_batches, arrays


# --- running --------------------------------------------------------------------------------------


@dataclass
class OrtRun:
    """One pass over the examples on one platform. Logits are in the caller's order."""

    platform: str  # "x86_64" or "aarch64"
    cpu: str  # the emulated core, or "host"
    emulated: bool
    logits: np.ndarray  # (N, C)
    labels: np.ndarray | None
    ort_version: str
    wall_s: float  # whole run: interpreter start, ORT import, session, batches
    run_s: float  # time inside session.run only
    batches: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=-1)

    @property
    def accuracy(self) -> float | None:
        if self.labels is None:
            return None
        return float((self.predictions == self.labels).mean())

    def to_dict(self) -> dict[str, Any]:
        d = {
            "platform": self.platform,
            "cpu": self.cpu,
            "emulated": self.emulated,
            "n": len(self.logits),
            "accuracy": self.accuracy,
            "ort_version": self.ort_version,
            "batches": self.batches,
            "wall_s": round(self.wall_s, 3),
            "run_s": round(self.run_s, 3),
            **self.meta,
        }
        if self.emulated:
            d["time_note"] = EMULATED_TIME_NOTE
        return d


def _run_worker(
    cmd: list[str],
    env: dict[str, str] | None,
    model: Path,
    examples: Sequence[Example],
    labels: Sequence[int] | None,
    batch_size: int,
    threads: int,
    opt_level: str,
    pad_id: int,
    timeout: float | None,
    what: str,
) -> tuple[np.ndarray, np.ndarray | None, dict, float, int]:
    model = Path(model).resolve()
    if not model.is_file():
        raise ValidateError(
            f"model {model} not found", "the ONNX file does not exist", "pass an exported .onnx"
        )
    if labels is not None and len(labels) != len(examples):
        raise ValidateError(
            "labels and examples differ in length",
            f"{len(labels)} vs {len(examples)}",
            "pass one label per example",
        )
    idx, arrays = make_batches(examples, batch_size, pad_id)
    with tempfile.TemporaryDirectory(prefix="cahp-emu-") as tmp:
        work = Path(tmp)
        np.savez(work / "batches.npz", **{f"b{i}.{k}": v for i, b in enumerate(arrays) for k, v in b.items()})
        (work / "job.json").write_text(
            json.dumps(
                {"model": str(model), "threads": threads, "opt_level": opt_level, "batches": len(arrays)}
            )
        )
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [*cmd, str(WORKER), str(work)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise ValidateError(
                f"{what} run timed out after {timeout:.0f} s",
                f"{len(examples)} examples in {len(arrays)} batches did not finish",
                "evaluate fewer examples or raise the timeout",
            ) from e
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not (work / "logits.npy").exists():
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ValidateError(
                f"{what} run failed (exit {proc.returncode})",
                tail,
                "check the model loads with onnxruntime on the host; rerun the setup script",
            )
        flat = np.load(work / "logits.npy")  # (N, C) in batch order
        info = json.loads((work / "result.json").read_text())
    logits = np.empty_like(flat)
    logits[np.concatenate(idx)] = flat
    lab = None if labels is None else np.asarray(labels, dtype=np.int64)
    return logits, lab, info, wall, len(arrays)


def run_emulated(
    model_onnx: str | Path,
    examples: Sequence[Example],
    labels: Sequence[int] | None = None,
    cpu: str = "cortex-a72",
    batch_size: int = EVAL_BATCH_SIZE,
    threads: int = 1,
    opt_level: str = "all",
    pad_id: int = 0,
    root: str | Path | None = None,
    timeout: float | None = 3600,
) -> OrtRun:
    """Logits and accuracy from the aarch64 ONNX Runtime under ``qemu-aarch64 -cpu <cpu>``."""
    env = find_env(root)
    logits, lab, info, wall, nb = _run_worker(
        env.command(cpu),
        env.environ(cpu),
        Path(model_onnx),
        examples,
        labels,
        batch_size,
        threads,
        opt_level,
        pad_id,
        timeout,
        f"emulated {cpu}",
    )
    if info.get("machine") != "aarch64":
        raise ValidateError(
            "emulated run did not run on aarch64",
            f"machine was {info.get('machine')!r}",
            f"rerun 'bash {SETUP_SCRIPT} {env.root}'",
        )
    return OrtRun(
        "aarch64",
        cpu,
        True,
        logits,
        lab,
        info["ort_version"],
        wall,
        info["run_s"],
        nb,
        {"threads": threads, "batch_size": batch_size, "cpu_features": info.get("cpu_features", [])},
    )


def run_host(
    model_onnx: str | Path,
    examples: Sequence[Example],
    labels: Sequence[int] | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
    threads: int = 1,
    opt_level: str = "all",
    pad_id: int = 0,
    timeout: float | None = 3600,
) -> OrtRun:
    """The same worker and batches under this machine's Python: the reference for ``compare_with_host``."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"OMP_NUM_THREADS": "1"}
    logits, lab, info, wall, nb = _run_worker(
        [sys.executable],
        env,
        Path(model_onnx),
        examples,
        labels,
        batch_size,
        threads,
        opt_level,
        pad_id,
        timeout,
        "host",
    )
    return OrtRun(
        info["machine"],
        "host",
        False,
        logits,
        lab,
        info["ort_version"],
        wall,
        info["run_s"],
        nb,
        {"threads": threads, "batch_size": batch_size},
    )


@dataclass
class Comparison:
    """ARM kernels against x86 on the same inputs."""

    host: OrtRun
    arm: OrtRun
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    argmax_agreement: float  # fraction of examples with the same predicted class
    flips: int
    tolerance: float | None = None

    @property
    def within_tolerance(self) -> bool | None:
        return None if self.tolerance is None else self.max_abs_logit_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        drop = None
        if self.host.accuracy is not None and self.arm.accuracy is not None:
            drop = self.host.accuracy - self.arm.accuracy
        return {
            "cpu": self.arm.cpu,
            "n": len(self.arm.logits),
            "max_abs_logit_diff": self.max_abs_logit_diff,
            "mean_abs_logit_diff": self.mean_abs_logit_diff,
            "argmax_agreement": self.argmax_agreement,
            "flips": self.flips,
            "accuracy_x86": self.host.accuracy,
            "accuracy_arm": self.arm.accuracy,
            "accuracy_drop_arm_vs_x86": drop,
            "tolerance": self.tolerance,
            "within_tolerance": self.within_tolerance,
            "host": self.host.to_dict(),
            "arm": self.arm.to_dict(),
        }


def compare(host: OrtRun, arm: OrtRun, tolerance: float | None = None) -> Comparison:
    if host.logits.shape != arm.logits.shape:
        raise ValidateError(
            "x86 and ARM runs differ in shape",
            f"{host.logits.shape} vs {arm.logits.shape}",
            "compare runs over the same examples",
        )
    diff = np.abs(host.logits.astype(np.float64) - arm.logits.astype(np.float64))
    same = host.predictions == arm.predictions
    return Comparison(
        host, arm, float(diff.max()), float(diff.mean()), float(same.mean()), int((~same).sum()), tolerance
    )


def compare_with_host(
    model_onnx: str | Path,
    examples: Sequence[Example],
    labels: Sequence[int] | None = None,
    cpu: str = "cortex-a72",
    batch_size: int = EVAL_BATCH_SIZE,
    threads: int = 1,
    opt_level: str = "all",
    pad_id: int = 0,
    tolerance: float | None = None,
    root: str | Path | None = None,
    timeout: float | None = 3600,
) -> Comparison:
    """Run the examples on x86 (this host) and on the emulated ARM core; report how far they differ."""
    arm = run_emulated(
        model_onnx, examples, labels, cpu, batch_size, threads, opt_level, pad_id, root, timeout
    )
    host = run_host(model_onnx, examples, labels, batch_size, threads, opt_level, pad_id, timeout)
    return compare(host, arm, tolerance)
