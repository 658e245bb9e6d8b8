"""ARM64 numerics under emulation (issue 5, item 3): the aarch64 ORT under qemu agrees with x86.

The emulated tests need the folder built by scripts/setup-arm64-emulation.sh (CI: .ci/setup-arm64.sh
writes CAHP_ARM64_ROOT to .ci/env); they skip with the reason when it is not set.
Runtime on 2 shared cores: ~25 s with emulation, < 1 s without.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cahp_edge.errors import TargetError, ValidateError
from cahp_edge.targets.emulate import (
    EMULATED_TIME_NOTE,
    ENV_ROOT,
    check_cpu,
    compare_with_host,
    find_env,
    make_batches,
    run_host,
)

# Tolerances, stated: fp32 ARM and x86 kernels differ only in the last bits (exp, GELU, LayerNorm and
# summation order; ~3e-6 on these logits). int8 magnifies that: dynamic quantization rounds every
# activation to a u8 step, and a value sitting on a rounding boundary lands one step apart on the two
# CPUs (x86 AVX-512/AVX2 and ARM NEON may also accumulate in different widths). On this model logits
# move by up to a few 1e-2 (measured 0.028; they span about +-3). 0.1 leaves room without hiding a
# broken kernel, whose errors are of the order of the logits (qemu 7.2 + `max`: 29% argmax flips).
INT8_MAX_ABS_DIFF = 0.1
INT8_MIN_ARGMAX_AGREEMENT = 0.95
FP32_MAX_ABS_DIFF = 1e-4
N_EXAMPLES = 48


def _examples(n: int = N_EXAMPLES, vocab: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    ex = []
    for _ in range(n):
        t = int(rng.integers(3, 40))
        ex.append({"input_ids": rng.integers(5, vocab, t).tolist(), "attention_mask": [1] * t})
    return ex, rng.integers(0, 3, n).tolist()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT classifier exported to ONNX, plus its dynamic int8 (per-channel u8/s8) version."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("emu-model")
    # initializer_range 0.2 (not 0.02): logits of a few units, so int8 rounding shows in them
    cfg = AutoConfig.for_model(
        "bert",
        num_labels=3,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=200,
        max_position_embeddings=64,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager").eval()
    ids = torch.randint(5, 200, (2, 16))
    axes = {
        "input_ids": {0: "batch", 1: "seq"},
        "attention_mask": {0: "batch", 1: "seq"},
        "logits": {0: "batch"},
    }
    fp32, int8 = out / "model.onnx", out / "model.int8.onnx"
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids)),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    return {"fp32": fp32, "int8": int8}


@pytest.fixture(scope="module")
def arm_root() -> Path:
    if not os.environ.get(ENV_ROOT):
        pytest.skip(
            f"{ENV_ROOT} is not set: build the emulation folder with "
            f"'bash scripts/setup-arm64-emulation.sh DIR' and export {ENV_ROOT}=DIR"
        )
    return find_env().root


# --- without emulation ------------------------------------------------------------------------------


def test_batches_sorted_by_length_and_padded_per_batch():
    ex = [{"input_ids": [7] * n, "attention_mask": [1] * n} for n in (5, 2, 9, 3, 2, 7, 1)]
    idx, arrays = make_batches(ex, batch_size=3, pad_id=1)
    assert [i.tolist() for i in idx] == [[6, 1, 4], [3, 0, 5], [2]]
    assert [a["input_ids"].shape for a in arrays] == [(3, 2), (3, 7), (1, 9)]
    # padding: pad_id in input_ids, 0 in the mask; real tokens untouched
    assert arrays[1]["input_ids"][0].tolist() == [7, 7, 7, 1, 1, 1, 1]
    assert arrays[1]["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert sum(int(a["attention_mask"].sum()) for a in arrays) == 29


def test_host_run_restores_caller_order(tiny_onnx):
    ex, labels = _examples(12)
    a = run_host(tiny_onnx["fp32"], ex, labels, batch_size=5)
    b = run_host(tiny_onnx["fp32"], ex[::-1], labels[::-1], batch_size=3)
    # different batching and order, same example -> same logits row (padding is masked)
    np.testing.assert_allclose(a.logits, b.logits[::-1], atol=1e-5)
    assert a.accuracy == b.accuracy and not a.emulated and "time_note" not in a.to_dict()


@pytest.mark.parametrize("cpu", ["max", "", " max , sve=off"])
def test_default_max_core_is_refused(cpu):
    with pytest.raises(TargetError, match="not pinned to a real core"):
        check_cpu(cpu)
    assert check_cpu("max,sme=off") == "max,sme=off" and check_cpu("cortex-a72") == "cortex-a72"


def test_missing_setup_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_ROOT, raising=False)
    with pytest.raises(ValidateError, match=f"{ENV_ROOT} is not set. Fix: run 'bash scripts/setup-arm64"):
        find_env()
    with pytest.raises(ValidateError, match=r"is incomplete: missing .*qemu-aarch64"):
        find_env(tmp_path)


# --- under emulation ---------------------------------------------------------------------------------


def test_int8_cortex_a72_agrees_with_x86(tiny_onnx, arm_root):
    ex, labels = _examples()
    c = compare_with_host(
        tiny_onnx["int8"],
        ex,
        labels,
        cpu="cortex-a72",
        batch_size=8,
        tolerance=INT8_MAX_ABS_DIFF,
        timeout=600,
    )
    d = c.to_dict()
    assert c.arm.platform == "aarch64" and c.host.platform == "x86_64"
    assert (
        "asimd" in c.arm.meta["cpu_features"] and "asimddp" not in c.arm.meta["cpu_features"]
    )  # a Pi 4 core
    assert c.within_tolerance, d
    assert c.argmax_agreement >= INT8_MIN_ARGMAX_AGREEMENT, d
    assert c.arm.logits.shape == (N_EXAMPLES, 3) and np.isfinite(c.arm.logits).all()
    assert abs(d["accuracy_drop_arm_vs_x86"]) <= 1 - INT8_MIN_ARGMAX_AGREEMENT
    assert d["arm"]["time_note"] == EMULATED_TIME_NOTE and d["arm"]["emulated"] is True


def test_fp32_cortex_a76_matches_x86(tiny_onnx, arm_root):
    ex, labels = _examples(24, seed=1)
    c = compare_with_host(tiny_onnx["fp32"], ex, labels, cpu="cortex-a76", batch_size=8, timeout=600)
    assert "asimddp" in c.arm.meta["cpu_features"]  # the Pi 5 core has dot product
    assert c.max_abs_logit_diff <= FP32_MAX_ABS_DIFF, c.to_dict()
    assert c.flips == 0 and c.arm.accuracy == c.host.accuracy
