"""MODEL_CARD.md and a self-contained report.html (plots embedded as base64 PNG) for one release.

Plots: the accuracy-vs-heads sweep with its polynomial fit and knee, the kept-heads heatmap
(layer x head), latency and accuracy bars (dense fp32 vs pruned fp32 vs shipped), and the budget
verdicts. Inputs are plain dicts read from stage outputs, so a report can be re-rendered later.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any

LABELS = {"dense": "dense fp32", "pruned": "pruned fp32", "shipped": "pruned + quantized (shipped)"}
COLORS = {"dense": "#9aa5b1", "pruned": "#5b8def", "shipped": "#1f9d55"}


@dataclass
class ReportContext:
    target: Any
    plan: dict
    metrics: dict[str, dict]
    verdict: dict
    splits: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)


# ---- data views ---------------------------------------------------------------------------------
def curve_points(plan: dict) -> list[tuple[int, float]]:
    raw = plan.get("curve") or (plan.get("sweep") or {}).get("points") or []
    pts = []
    for p in raw:
        if isinstance(p, dict):
            k, a = p.get("heads", p.get("k")), p.get("accuracy")
        else:
            k, a = p[0], p[1]
        if k is not None and a is not None:
            pts.append((int(k), float(a)))
    return sorted(pts)


def knee_info(plan: dict) -> dict:
    k = plan.get("knee")
    return k if isinstance(k, dict) else ({"k": k} if isinstance(k, int) else {})


def _fmt(v: Any, spec: str = ".4f", unit: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{unit}"


# ---- plots --------------------------------------------------------------------------------------
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_knee(plan: dict) -> str | None:
    """Selection-split accuracy (%) per head count, the polynomial fit and the chosen knee."""
    pts = curve_points(plan)
    if len(pts) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ks, accs = zip(*pts, strict=True)
    ax.plot(ks, [100 * a for a in accs], "o", color="#5b8def", label="measured (selection split)")
    knee = knee_info(plan)
    fitted = plan.get("fitted_curve") or []
    if fitted:
        fk, fy = zip(*[(p[0], p[1]) for p in fitted], strict=True)
        ax.plot(fk, fy, "-", color="#e07a1f", label=f"polynomial fit (degree {knee.get('degree', '?')})")
    k_star = plan.get("k_star", knee.get("k"))
    if k_star is not None:
        k_fit = knee.get("k")
        label = f"kept: k={k_star}" + (f" (knee of the fit at {k_fit}, next grid point)"
                                       if k_fit is not None and k_fit != k_star else " (knee)")
        ax.axvline(k_star, color="#1f9d55", ls="--", label=label)
    ax.set_xlabel("heads kept")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Accuracy vs heads kept")
    return _png(fig)


def plot_heatmap(plan: dict) -> str | None:
    import numpy as np

    num_heads, kept = plan.get("num_heads"), plan.get("kept")
    if not num_heads or kept is None:
        return None
    plt = _plt()
    grid = np.full((len(num_heads), max(num_heads)), np.nan)
    for layer, n in enumerate(num_heads):
        grid[layer, :n] = 0.0
        for h in kept[layer]:
            grid[layer, h] = 1.0
    fig, ax = plt.subplots(
        figsize=(max(3.5, 0.42 * grid.shape[1] + 1.5), max(2.2, 0.38 * grid.shape[0] + 1.2))
    )
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    cmap = ListedColormap(["#e5e7eb", "#1f9d55"]).with_extremes(bad="#ffffff")  # dropped, kept
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.legend(handles=[Patch(color="#1f9d55", label="kept"), Patch(color="#e5e7eb", label="removed")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_xticks(range(grid.shape[1]))
    ax.set_yticks(range(grid.shape[0]))
    ax.set_yticklabels([f"{i} ({len(kept[i])})" for i in range(grid.shape[0])])
    ax.set_xlabel("head")
    ax.set_ylabel("layer (heads kept)")
    ax.set_title(f"Kept heads: {sum(len(k) for k in kept)} of {sum(num_heads)}")
    return _png(fig)


def plot_bars(metrics: dict[str, dict]) -> str | None:
    names = [n for n in ("dense", "pruned", "shipped") if n in metrics]
    if not names:
        return None
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.6, 3.2))
    acc = [metrics[n].get("accuracy") or 0.0 for n in names]
    lat = [(metrics[n].get("latency_ms") or {}).get("p50") or 0.0 for n in names]
    p90 = [(metrics[n].get("latency_ms") or {}).get("p90") or 0.0 for n in names]
    labels = [LABELS[n].replace(" (shipped)", "\n(shipped)") for n in names]
    colors = [COLORS[n] for n in names]
    bars = a1.bar(labels, acc, color=colors)
    a1.bar_label(bars, fmt="%.3f", fontsize=8)
    a1.set_ylim(0, max(1e-6, max(acc)) * 1.18)
    a1.set_title("Accuracy (evaluation split)")
    bars = a2.bar(labels, lat, color=colors, label="p50")
    a2.scatter(labels, p90, color="#333333", marker="_", s=400, label="p90", zorder=3)
    a2.bar_label(bars, fmt="%.2f", fontsize=8)
    a2.set_ylim(0, max(1e-6, max(lat + p90)) * 1.18)
    a2.set_title("Latency (ms)")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.tick_params(axis="x", labelsize=8)
        a.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# ---- documents ----------------------------------------------------------------------------------
def _metric_rows(metrics: dict[str, dict]) -> list[list[str]]:
    rows = []
    for n in ("dense", "pruned", "shipped"):
        m = metrics.get(n)
        if not m:
            continue
        lat = m.get("latency_ms") or {}
        rows.append(
            [
                LABELS[n],
                _fmt(m.get("accuracy")),
                _fmt(lat.get("p50"), ".2f"),
                _fmt(lat.get("p90"), ".2f"),
                _fmt(lat.get("p99"), ".2f"),
                _fmt(m.get("size_mb"), ".1f"),
                _fmt(m.get("peak_memory_mb"), ".0f"),
            ]
        )
    return rows


METRIC_HEAD = ["model", "accuracy", "p50 ms", "p90 ms", "p99 ms", "size MB", "peak RSS MB"]


def _budget_rows(verdict: dict) -> list[list[str]]:
    word = {"pass": "pass", "fail": "FAIL", "skip": "not checked"}
    return [
        [
            c["budget"],
            _fmt(c.get("value"), ".4g"),
            _fmt(c.get("limit"), ".4g"),
            word.get(c.get("status"), "?"),
            c.get("reason", ""),
        ]
        for c in verdict.get("checks", [])
    ]


def _knee_text(plan: dict, knee: dict) -> str:
    if "k" not in knee:
        return ", head count fixed by --heads / --keep-ratio"
    kept = plan.get("k_star", knee["k"])
    snap = f", kept {kept} (next sweep point)" if kept != knee["k"] else ""
    return f", knee of the degree-{knee.get('degree')} fit at k={knee['k']}{snap}"


def model_card(ctx: ReportContext) -> str:
    t, plan, m = ctx.target, ctx.plan, ctx.manifest
    knee = knee_info(plan)
    hp = plan.get("heads_per_layer") or [len(k) for k in plan.get("kept", [])]
    src = m.get("source", {})
    lines = [
        f"# Model card: {src.get('name') or src.get('model', 'model')} for {t.name}",
        "",
        f"A CAHP head-pruned, quantized sequence classifier built by cahp-edge {m.get('cahp_edge', '')} "
        f"for **{t.name}** ({t.description}).",
        "",
        "## What was done",
        "",
        f"- Source checkpoint sha256 `{src.get('checkpoint_sha256', '')[:16]}…`",
        f"- Heads: {sum(plan.get('num_heads', []))} -> {sum(hp)} (per layer {hp}); method "
        f"`{plan.get('method', '?')}`"
        + _knee_text(plan, knee),
        f"- Quantization: {t.quantization.mode} {t.quantization.format}, per-channel "
        f"{t.quantization.per_channel}, reduce-range {t.quantization.reduce_range} — {t.quantization.why}",
        "",
        "## Data",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in ctx.splits.items()]
    lines += [
        "",
        "## Results (measured on the build host with the target's settings)",
        "",
        _md_table(METRIC_HEAD, _metric_rows(ctx.metrics)),
        "",
        f"## Budgets: {ctx.verdict.get('status', '?')}",
        "",
        _md_table(["budget", "value", "limit", "verdict", "why"], _budget_rows(ctx.verdict)),
        "",
        "Latency here is from the build host. Measure on the device with "
        "`python -m cahp_edge.runtime profile . --json` (see README).",
        "",
        *_session_lines(t),
        "## Limitations",
        "",
        "- Accuracy is measured on the evaluation split named above only.",
        "- Pruning removes attention heads; speedups are bounded by the attention share of the FLOPs.",
        "",
    ]
    return "\n".join(lines)


def _session_lines(t) -> list[str]:
    """How to open the model with the session settings the numbers above were measured with."""
    threads = f"so.intra_op_num_threads = {t.threads}\n" if t.threads else ""
    disabled = t.disabled_optimizers
    kw = f", disabled_optimizers={disabled!r}" if disabled else ""
    lines = ["## Running it", "", "```python", "import onnxruntime as ort", "",
             f"so = ort.SessionOptions()\n{threads}sess = ort.InferenceSession("
             f"\"model.onnx\", so, providers={list(t.execution_providers)!r}{kw})",
             "```", ""]
    if disabled:
        lines += [f"`disabled_optimizers` turns off ONNX Runtime rewrites that measured slower for this "
                  f"target ({', '.join(disabled)}); without it the outputs are the same, only slower.", ""]
    return lines


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(head: list[str], rows: list[list[str]], verdict_col: int | None = None) -> str:
    th = "".join(f"<th{' class=text' if h == 'why' else ''}>{html.escape(h)}</th>" for h in head)
    body = []
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            cls = ""
            if i == verdict_col:
                cls = ' class="pass"' if c == "pass" else (' class="fail"' if c == "FAIL" else "")
            if i == len(r) - 1 and head[-1] == "why":  # prose reads left-aligned
                cls = ' class="text"'
            cells.append(f"<td{cls}>{html.escape(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:980px;margin:2em auto;
color:#222;
padding:0 1em}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}.pass{color:#1f7a3f;font-weight:600}.fail{color:#b42318;
font-weight:700}.badge{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff}
.ok{background:#1f9d55}.bad{background:#b42318}.warn{background:#b7791f}img{max-width:100%}
code{background:#f4f4f4;padding:0 .2em}
.small{color:#666;font-size:.85em}td.text,th.text{text-align:left}td.text{color:#444}"""


def _source_name(manifest: dict) -> str:
    src = manifest.get("source", {})
    return src.get("name") or src.get("model", "")


def report_html(ctx: ReportContext) -> str:
    t, m = ctx.target, ctx.manifest
    status = ctx.verdict.get("status", "?")
    badge = {"pass": "ok", "fail": "bad"}.get(status, "warn")
    knee_note = ("the head count was fixed (--heads / --keep-ratio), so no sweep was run"
                 if ctx.plan.get("budget_source", "knee") != "knee" else "no sweep recorded in the plan")
    plots = [
        ("Head count: sweep, fit and knee", plot_knee(ctx.plan)),
        ("Kept heads (layer x head)", plot_heatmap(ctx.plan)),
        ("Accuracy and latency", plot_bars(ctx.metrics)),
    ]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>cahp-edge report: {html.escape(t.name)}"
        f"</title><style>{CSS}</style></head><body>",
        f"<h1>cahp-edge release for <code>{html.escape(t.name)}</code> "
        f"<span class='badge {badge}'>budgets: {html.escape(status)}</span></h1>",
        f"<p class='small'>{html.escape(t.description)} · source "
        f"<code>{html.escape(str(_source_name(m)))}</code> · built "
        f"{html.escape(str(m.get('built_at', '')))} · cahp-edge "
        f"{html.escape(str(m.get('cahp_edge', '')))}</p>",
        "<h2>Budgets</h2>",
        _html_table(["budget", "value", "limit", "verdict", "why"], _budget_rows(ctx.verdict), 3),
        "<h2>Dense vs pruned vs shipped</h2>",
        _html_table(METRIC_HEAD, _metric_rows(ctx.metrics)),
    ]
    for title, png in plots:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(
            f"<img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
            if png
            else f"<p class='small'>{html.escape(knee_note)}</p>"
        )
    parts.append(
        "<h2>Data splits</h2><ul>"
        + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in ctx.splits.items())
        + "</ul>"
    )
    stage_rows = [
        [n, "cached" if s.get("cached") else f"{s.get('seconds', 0):.1f} s", s.get("key", "")]
        for n, s in ctx.stages.items()
    ]
    parts += [
        "<h2>Stages</h2>",
        _html_table(["stage", "time", "key"], stage_rows),
        "<p class='small'>Latency measured on the build host with the target's thread count and benchmark "
        "settings; run the device-side runner on the device for device numbers.</p></body></html>",
    ]
    return "\n".join(parts)


def context_from_release(d) -> ReportContext:
    """Rebuild the report's inputs from a release folder (to re-render MODEL_CARD.md / report.html)."""
    import json
    from pathlib import Path

    from cahp_edge.targets.profile import Target

    d = Path(d)
    man = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
    met = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    plan = json.loads((d / "cahp_heads.json").read_text(encoding="utf-8"))
    target = Target.model_validate(man["target_profile"])
    return ReportContext(target=target, plan=plan, metrics=met["models"], verdict=met["budgets"],
                         splits=met.get("splits", {}), manifest=man, stages=man.get("stages", {}))
