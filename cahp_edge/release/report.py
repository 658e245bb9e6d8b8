"""MODEL_CARD.md and a self-contained report.html (plots embedded as base64 PNG) for one release.

Plots: the accuracy-vs-heads sweep with its polynomial fit and knee, the kept-heads heatmap
(layer x head), latency and accuracy bars (dense fp32 vs pruned fp32 vs shipped), and the budget
verdicts. Inputs are plain dicts read from stage outputs, so a report can be re-rendered later.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from cahp_edge import plots
from cahp_edge.plots import knee_info

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
    example: dict = field(default_factory=dict)  # first eval row: {"text": ..., "text_pair"?: ...}
    max_length: int = 128  # truncation the runner uses: benchmark seq_len, capped by the model's positions


# ---- plots (drawn by cahp_edge.plots, inlined as base64 PNG) ------------------------------------
def _fmt(v: Any, spec: str = ".4f", unit: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{unit}"


def plot_knee(plan: dict) -> str | None:
    fig = plots.knee_figure(plan)
    return plots.png_base64(fig) if fig is not None else None


def plot_frontier(plan: dict, metrics: dict[str, dict]) -> str | None:
    fig = plots.frontier_figure(plan, metrics)
    return plots.png_base64(fig) if fig is not None else None


def plot_heatmap(plan: dict) -> str | None:
    fig = plots.heads_figure(plan)
    return plots.png_base64(fig) if fig is not None else None


def plot_bars(metrics: dict[str, dict]) -> str | None:
    fig = plots.bars_figure(metrics, LABELS, COLORS)
    return plots.png_base64(fig) if fig is not None else None


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


def task_of(ctx: ReportContext):
    """The release's task record (cahp_edge.tasks), from the build options its manifest records."""
    from cahp_edge.tasks import TASKS

    return TASKS.get(str((ctx.manifest.get("options") or {}).get("task")), TASKS["sequence-classification"])


def metric_head(ctx: ReportContext) -> list[str]:
    return [METRIC_HEAD[0], task_of(ctx).metric, *METRIC_HEAD[2:]]


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
    cost = plots.drop_text(plots.kept_drop(plan))
    cost = f"; {cost}" if cost else ""
    if plan.get("kept_neurons") is not None:  # heads + FFN neurons: one cost budget
        if "k" not in knee:
            return ", cost budget fixed by --speedup" + cost
        return f", knee of the degree-{knee.get('degree')} fit at {plan.get('k_star', knee['k']) / 10:g}% " \
               "of the dense cost" + cost
    if "k" not in knee:
        return ", head count fixed by --heads / --keep-ratio" + cost
    kept = plan.get("k_star", knee["k"])
    snap = f", kept {kept} (next sweep point)" if kept != knee["k"] else ""
    return f", knee of the degree-{knee.get('degree')} fit at k={knee['k']}{snap}" + cost


def model_card(ctx: ReportContext) -> str:
    t, plan, m = ctx.target, ctx.plan, ctx.manifest
    knee = knee_info(plan)
    hp = plan.get("heads_per_layer") or [len(k) for k in plan.get("kept", [])]
    src = m.get("source", {})
    lines = [
        f"# Model card: {src.get('name') or src.get('model', 'model')} for {t.name}",
        "",
        f"A CAHP-pruned, quantized {task_of(ctx).name} model built by cahp-edge {m.get('cahp_edge', '')} "
        f"for **{t.name}** ({t.description}).",
        "",
        "## What was done",
        "",
        f"- Source checkpoint sha256 `{src.get('checkpoint_sha256', '')[:16]}…`",
        f"- Heads: {sum(plan.get('num_heads', []))} -> {sum(hp)} (per layer {hp}); method "
        f"`{plan.get('method', '?')}`"
        + _knee_text(plan, knee),
        *_ffn_lines(plan),
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
        _md_table(metric_head(ctx), _metric_rows(ctx.metrics)),
        "",
        *_measured_lines(ctx),
        f"## Budgets: {ctx.verdict.get('status', '?')}",
        "",
        _md_table(["budget", "value", "limit", "verdict", "why"], _budget_rows(ctx.verdict)),
        "",
        *_running_lines(t, ctx.example, ctx.max_length, task_of(ctx).name),
        "## Limitations",
        "",
        f"- The {task_of(ctx).metric_label} is measured on the evaluation split named above only.",
        "- Pruning removes attention heads; speedups are bounded by the attention share of the FLOPs."
        if plan.get("kept_neurons") is None else
        "- Pruning removes attention heads and FFN neurons; the ideal speedup is MAC-proportional at the "
        "calibration data's mean length unless the cost model says it was measured.",
        "",
    ]
    return "\n".join(lines)


def _ffn_lines(plan: dict) -> list[str]:
    """The FFN half of a heads + neurons plan: widths, and the cost model its budget was counted in."""
    if plan.get("kept_neurons") is None:
        return []
    npl = plan.get("neurons_per_layer") or [len(k) for k in plan["kept_neurons"]]
    cost = plan.get("cost_model") or {}
    source = cost.get("source", "cost model unknown")
    return [f"- FFN neurons: {sum(plan.get('num_neurons', []))} -> {sum(npl)} (per layer {npl}); ideal "
            f"speedup {plan.get('speedup_ideal', float('nan')):.2f}x ({source})"]


def _measured_lines(ctx: ReportContext) -> list[str]:
    """Where and how the table above was measured (latency of an ARM target on an x86 host says so)."""
    host = (ctx.manifest.get("build_host") or {})
    shipped = ctx.metrics.get("shipped") or {}
    out = []
    if host:
        where = f"Measured on the build host ({host.get('machine')}, {host.get('cpu')})"
        from cahp_edge.targets.profile import ARCH_ALIASES

        same = ARCH_ALIASES.get(str(host.get("machine")).lower()) == ctx.target.arch
        out.append(where + ("." if same else f", not on a {ctx.target.name} device: its latency is not the "
                                            "device's; measure there with the runner below."))
    if shipped.get("eval_batching"):
        out.append(f"{task_of(ctx).metric_label[:1].upper()}{task_of(ctx).metric_label[1:]} on "
                   f"{shipped.get('eval_examples')} examples in {shipped['eval_batching']} "
                   "(the runner's and run.py's default; int8 logits change slightly with batching).")
    return [" ".join(out), ""] if out else []


# the last lines of the runnable example, per task: what one input's output means
_RUN = "sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})[0][0]"
_OUTPUT_CODE = {
    "sequence-classification": f"""logits = {_RUN}  # (num_labels,)
print(id2label[str(int(logits.argmax()))])""",
    "sentence-embedding": f"""vec = {_RUN}  # (dim,)
print(vec.shape, float(np.linalg.norm(vec)))  # pooled (and normalised) inside the graph""",
    "token-classification": f"""logits = {_RUN}  # (T, tags)
print([(enc.tokens[j], id2label[str(int(k))]) for j, k in enumerate(logits.argmax(-1))])""",
}


def _running_lines(t, example: dict, seq_len: int, task: str = "sequence-classification") -> list[str]:
    """A complete, runnable example (tokenize, run, map the label) with the settings measured above.

    Everything it needs is in the release; tests execute it against a built release.
    """
    text = example.get("text") or " ".join(example.get("tokens") or []) or "an example sentence"
    pair = example.get("text_pair")
    threads = f"so.intra_op_num_threads = {t.threads}\n" if t.threads else ""
    disabled = list(t.disabled_optimizers)
    kw = f",\n                            disabled_optimizers={disabled!r}" if disabled else ""
    enc = f"tok.encode({text!r}, {pair!r})" if pair is not None else f"tok.encode({text!r})"
    code = f"""import json

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

tok = Tokenizer.from_file("tokenizer.json")
tok.no_padding()
tok.enable_truncation(max_length={seq_len})
id2label = json.load(open("config.json")).get("id2label")

so = ort.SessionOptions()
{threads}providers = [p for p in {list(t.execution_providers)!r} if p in ort.get_available_providers()]
sess = ort.InferenceSession("model.onnx", so, providers=providers{kw})

enc = {enc}
feeds = {{"input_ids": np.array([enc.ids], dtype=np.int64),  # (1, T)
         "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
         "token_type_ids": np.array([enc.type_ids], dtype=np.int64)}}
""" + _OUTPUT_CODE[task]
    lines = ["## Running it", "",
             "Everything below needs only `pip install onnxruntime numpy tokenizers` (no torch, no "
             "cahp-edge). From this folder:", "",
             "```python", code, "```", ""]
    if disabled:
        lines += [f"`disabled_optimizers` turns off ONNX Runtime rewrites that measured slower for this "
                  f"target ({', '.join(disabled)}); without it the outputs are the same, only slower.", ""]
    lines += [
        "For many inputs, `python run.py --file inputs.jsonl` (one `{\"text\": ...}` per line"
        + (", with `text_pair`" if pair is not None else "") + ") or `from run import Classifier` "
        "batches the way the accuracy above was measured (length-sorted batches of 16).", "",
        "Measure this release on the device (accuracy on the shipped eval.jsonl, latency, memory):", "",
        "```sh", "python -m cahp_edge_runtime profile . --json", "```", "",
    ]
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
    joint = ctx.plan.get("kept_neurons") is not None
    task = task_of(ctx)
    # classifiers keep the titles users know; other tasks name their own metric (selection curves of
    # embeddings and taggers are agreement with the dense model: cosine, tag agreement)
    what = "Accuracy" if task.metric == "accuracy" else \
        f"Quality ({task.metric}; selection: {task.agreement})"
    plots = [
        (f"{what} vs cost: the budgets scored, and what shipped", plot_frontier(ctx.plan, ctx.metrics))
        if joint else ("Head count: sweep, fit and knee", plot_knee(ctx.plan)),
        ("Kept heads (layer x head)", plot_heatmap(ctx.plan)),
        ("Accuracy and latency" if task.metric == "accuracy" else f"{task.metric} and latency",
         plot_bars(ctx.metrics)),
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
        _html_table(metric_head(ctx), _metric_rows(ctx.metrics)),
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


def running_inputs(eval_file, config_file, target) -> dict:
    """The card's runnable example: the first evaluation row and the runner's truncation length."""
    import json
    from pathlib import Path

    first = Path(eval_file).read_text(encoding="utf-8").split("\n", 1)[0]
    row = json.loads(first) if first.strip() else {}
    example = {k: row[k] for k in ("text", "text_pair") if isinstance(row.get(k), str)}
    config = json.loads(Path(config_file).read_text(encoding="utf-8"))
    # what the runner (runtime/profile.py) truncates to: the benchmark length, capped by the model
    max_length = min(target.benchmark.seq_len, int(config.get("max_position_embeddings") or 10**9))
    return {"example": example, "max_length": max_length}


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
                         splits=met.get("splits", {}), manifest=man, stages=man.get("stages", {}),
                         **running_inputs(d / "eval.jsonl", d / "config.json", target))
