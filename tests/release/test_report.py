"""report.py on synthetic inputs: the knee plot with its fit, the heatmap, bars, and budget verdicts."""

from __future__ import annotations

import base64

from cahp_edge.release import report
from cahp_edge.targets.profile import load_target

PLAN = {
    "num_heads": [4, 4, 4],
    "kept": [[0, 1], [2], [0, 1, 3]],
    "heads_per_layer": [2, 1, 3],
    "method": "cahp",
    "budget_source": "knee",
    "k_star": 6,
    "knee": {"k": 5, "degree": 3},
    "curve": [{"heads": k, "accuracy": a} for k, a in [(12, 0.9), (9, 0.89), (6, 0.86), (4, 0.7), (2, 0.4)]],
    "fitted_curve": [[k, 100 * (0.9 - 0.5 * (1 - k / 12) ** 3)] for k in range(2, 13)],
}
METRICS = {
    n: {
        "accuracy": a,
        "latency_ms": {"p50": p, "p90": p * 1.2, "p99": p * 1.5},
        "size_mb": s,
        "peak_memory_mb": 200.0,
    }
    for n, a, p, s in [("dense", 0.9, 10.0, 90.0), ("pruned", 0.88, 8.0, 80.0), ("shipped", 0.87, 4.0, 22.0)]
}
VERDICT = {
    "status": "fail",
    "failed": ["accuracy_drop"],
    "checks": [
        {"budget": "accuracy_drop", "value": 0.03, "limit": 0.01, "status": "fail", "reason": "drops 0.03"},
        {
            "budget": "p90_latency_ms",
            "value": 4.8,
            "limit": 80,
            "status": "skip",
            "reason": "not device latency",
        },
    ],
}


def _ctx() -> report.ReportContext:
    return report.ReportContext(
        target=load_target("rpi5-arm64"),
        plan=PLAN,
        metrics=METRICS,
        verdict=VERDICT,
        splits={"eval": "all 120 rows of dev.tsv"},
        manifest={"source": {"model": "ckpt", "checkpoint_sha256": "ab" * 32}},
        stages={"prune": {"key": "k1", "seconds": 3.0, "cached": False}},
    )


def test_plots_are_pngs():
    for png in (report.plot_knee(PLAN), report.plot_heatmap(PLAN), report.plot_bars(METRICS)):
        assert base64.b64decode(png)[:4] == b"\x89PNG"
    assert report.plot_knee({"curve": [{"heads": 3, "accuracy": 0.5}]}) is None  # one point: no curve


def test_html_and_card_show_verdicts_and_numbers():
    ctx = _ctx()
    page = report.report_html(ctx)
    assert page.count("data:image/png;base64,") == 3
    assert "budgets: fail" in page and 'class="fail">FAIL' in page and "not checked" in page
    assert "not device latency" in page and "all 120 rows of dev.tsv" in page
    card = report.model_card(ctx)
    assert "Heads: 12 -> 6 (per layer [2, 1, 3])" in card
    assert "knee of the degree-3 fit at k=5, kept 6 (next sweep point)" in card
    assert "| pruned + quantized (shipped) | 0.8700 | 4.00 | 4.80 | 6.00 | 22.0 | 200 |" in card
    assert "## Budgets: fail" in card
    # the session line the numbers were measured with: plain for rpi5, with the rewrite off for x86
    assert 'InferenceSession("model.onnx", so, providers=providers)' in card
    assert "disabled_optimizers" not in card
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    compile(code, "MODEL_CARD.md", "exec")  # run against a real release in tests/release/test_device_files.py
    assert "tok.encode('an example sentence')" in code and "max_length=128" in code
    import dataclasses

    x86 = dataclasses.replace(ctx, target=load_target("x86-64-avx512-vnni"), max_length=64,
                              example={"text": "It's a premise.", "text_pair": "A hypothesis."})
    card = report.model_card(x86)
    assert "so.intra_op_num_threads = 4\n" in card
    assert "disabled_optimizers=['SkipLayerNormFusion'])" in card
    assert '''tok.encode("It's a premise.", 'A hypothesis.')''' in card and "max_length=64" in card



def test_accuracy_bars_show_a_point_of_difference():
    """A one-point drop must be visible: the accuracy axis is zoomed around the values and each bar
    after the dense one is labelled with its change in points."""
    from cahp_edge import plots

    metrics = {"dense": {"accuracy": 0.871}, "pruned": {"accuracy": 0.866}, "shipped": {"accuracy": 0.861}}
    fig = plots.bars_figure(metrics, report.LABELS, report.COLORS)
    acc_ax = fig.axes[0]
    lo, hi = acc_ax.get_ylim()
    assert lo > 0.8 and hi < 0.95 and (0.871 - 0.861) / (hi - lo) > 0.15  # a point is >= 15% of the axis
    texts = [t.get_text() for t in acc_ax.texts]
    assert texts == ["0.871", "0.866\n(-0.5 pt)", "0.861\n(-1.0 pt)"]


def test_card_says_where_and_how_the_numbers_were_measured():
    import dataclasses

    ctx = _ctx()
    batching = "length-sorted batches of 16, each padded to its longest row"
    shipped = {**METRICS["shipped"], "eval_batching": batching, "eval_examples": 120}
    x86_host = {"machine": "x86_64", "cpu": "AMD EPYC"}
    arm = dataclasses.replace(ctx, metrics={**METRICS, "shipped": shipped},
                              manifest={**ctx.manifest, "build_host": x86_host})
    card = " ".join(report.model_card(arm).split())
    assert ("Measured on the build host (x86_64, AMD EPYC), not on a rpi5-arm64 device: its latency is not "
            "the device's") in card
    assert "Accuracy on 120 examples in length-sorted batches of 16, each padded to its longest row" in card
    x86 = dataclasses.replace(arm, target=load_target("x86-64-avx2"))
    card = " ".join(report.model_card(x86).split())
    assert "Measured on the build host (x86_64, AMD EPYC)." in card and "not on a" not in card


def test_the_knee_states_its_cost_in_points_everywhere():
    """One fact (plots.kept_drop): the card, the build's prune line and `prune` say what the chosen count
    costs on the selection split before recovery."""
    from cahp_edge import plots
    from cahp_edge.build.pipeline import _prune_line

    plan = {"selection_accuracy_dense": 0.629, "k_star": 30, "total_kept": 30, "knee": {"k": 28, "degree": 3},
            "curve": [{"heads": 72, "accuracy": 0.629}, {"heads": 30, "accuracy": 0.557},
                      {"heads": 20, "accuracy": 0.5}]}
    d = plots.kept_drop(plan)
    assert d == {"heads": 30, "dense": 0.629, "kept": 0.557, "drop_points": 7.2, "when": "before recovery",
                 "measure": "accuracy"}
    text = "selection accuracy 55.7% vs dense 62.9% (-7.2 pt before recovery)"
    assert text in report._knee_text(plan, plots.knee_info(plan))
    line = _prune_line({"budget_source": "knee", "knee": 28, "k_star": 30, "degree": 3, "heads_before": 72,
                        "heads_after": 30, "drop": d})
    assert line.endswith(text) and "kept 30 (next grid point)" in line
    assert plots.kept_drop({"k_star": 30, "curve": []}) is None  # nothing measured: nothing claimed


def test_frontier_figure_draws_heads_and_neurons_plans_only():
    from cahp_edge import plots

    curve = [{"k": 1000, "cost": 10.0, "accuracy": 0.5, "accuracy_masked": 0.5},
             {"k": 500, "cost": 5.0, "accuracy": 0.49, "accuracy_masked": 0.4}]
    joint = {"kept_neurons": [[0]], "curve": curve, "k_star": 500,
             "cost_model": {"unit": "ms", "source": "t"},
             "rivals": [{"method": "uniform", "selection_accuracy": 0.47}],
             "selection_accuracy_dense": 0.5}
    metrics = {"dense": {"accuracy": 0.5, "latency_ms": {"p50": 10.0}},
               "shipped": {"accuracy": 0.49, "latency_ms": {"p50": 3.0}}}
    fig = plots.frontier_figure(joint, metrics)
    left, right = fig.axes
    assert [len(line.get_xdata()) for line in left.lines][:2] == [2, 2]  # re-fit and masked series
    assert sorted(line.get_xdata()[0] for line in right.lines) == [3.0, 10.0]
    assert plots.frontier_figure({"kept": [[0]], "curve": [{"heads": 1, "accuracy": 0.5}]}, metrics) is None
