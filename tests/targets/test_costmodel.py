"""The per-target latency cost model (issue 15, item 6): measured with ORT under the target's settings
on uniform widths of the source model, a linear fit that predicts the measured points."""

from __future__ import annotations

import pytest

from cahp_edge.targets.costmodel import WIDTHS, measurable_here, measure_cost
from cahp_edge.targets.profile import load_target
from tests.helpers.build_tiny import make_checkpoint


@pytest.mark.skipif(not measurable_here(load_target("x86-64-avx2")), reason="needs an x86-64 host")
def test_measured_cost_model_fits_its_points(tmp_path):
    make_checkpoint(tmp_path / "ck")
    tgt = load_target("x86-64-avx2")
    c = measure_cost(tmp_path / "ck", tgt, seq_len=16, runs=8, rounds=2)
    assert c.unit == "ms" and c.source.startswith("measured: x86-64-avx2 int8 recipe")
    assert [(p["heads"], p["neurons"]) for p in c.measured] == [
        (3 * max(1, round(fh * 4)), 3 * max(1, round(fn * 48))) for fh, fn in WIDTHS]
    assert all(p["p50_ms"] > 0 for p in c.measured) and c.fixed >= 0
    # the fit goes through the measured medians to within what the source line says it does
    worst = max(abs(c.of([p["heads"]], [p["neurons"]]) - p["p50_ms"]) / p["p50_ms"] for p in c.measured)
    stated = float(c.source.rsplit("within ", 1)[1].rstrip("%")) / 100
    assert worst <= stated + 0.005


def test_measurable_here_follows_the_host_arch():
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert measurable_here(load_target("x86-64-avx2")) is x86
    assert measurable_here(load_target("rpi5-arm64")) is not x86
