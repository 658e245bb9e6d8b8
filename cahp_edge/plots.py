"""Every picture cahp-edge draws (matplotlib, Agg backend: no display needed), in one place.

Each ``*_figure`` function builds a figure from plain data (plan.json, metrics, compare rows); the
caller writes it as a file (``save``: the prune folder's PNGs) or inlines it (``png_base64``:
report.html). So the knee chart and the heatmap a user sees are the same in both.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return path


def png_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---- plan views (what the knee chart reads) -----------------------------------------------------
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


def kept_drop(plan: dict) -> dict | None:
    """Selection accuracy of the dense model and of the kept head count, and the drop in points: the one
    source for what the prune line, the plan and the card say the chosen count costs before recovery."""
    dense = plan.get("selection_accuracy_dense")
    k = plan.get("k_star", plan.get("total_kept"))
    at = dict(curve_points(plan)).get(int(k)) if k is not None else None
    if dense is None or at is None:
        return None
    # heads + neurons plans judged after the least-squares re-fit say so (units.py records it)
    when = plan.get("selection_accuracy_when") or "before recovery"
    return {"heads": int(k), "dense": float(dense), "kept": float(at),
            "drop_points": round(100 * (dense - at), 2), "when": when,
            "measure": plan.get("selection_measure") or "accuracy"}


def drop_text(d: dict | None) -> str:
    """The one wording of :func:`kept_drop` (build line, `prune` summary, report, model card)."""
    if not d:
        return ""
    return (f"selection {d.get('measure', 'accuracy')} {100 * d['kept']:.1f}% vs dense "
            f"{100 * d['dense']:.1f}% "
            f"({-d['drop_points']:+.1f} pt {d.get('when', 'before recovery')})")


def guard_text(knee: dict | None) -> str:
    """The one wording of a knee the --max-drop guard moved (plan ``knee``); "" when it did not."""
    if not knee or not knee.get("guarded_by_max_drop"):
        return ""
    return (f"Kneedle chose {knee['k_kneedle']}, moved up to {knee['k']} by the "
            f"{knee['max_drop_points']:g}-point --max-drop guard")


def better_rival(plan: dict) -> str | None:
    """One line when another method scored higher than the chosen plan at the same head count on the
    selection split (plan ``rivals``, scored by select_heads), with its numbers; None otherwise."""
    rivals = [r for r in plan.get("rivals") or [] if r["selection_accuracy"] > r["chosen_accuracy"]]
    if not rivals:
        return None
    r = max(rivals, key=lambda r: r["selection_accuracy"])
    method = plan.get("method", "the chosen method")
    at = r.get("at") or f"{r['heads']} heads"  # heads + neurons plans: "the same cost (...)"
    return (f"{r['method']} scores {100 * r['selection_accuracy']:.1f}% vs {method} "
            f"{100 * r['chosen_accuracy']:.1f}% on the selection split at {at} "
            f"({100 * (r['selection_accuracy'] - r['chosen_accuracy']):+.1f} pt, "
            f"{r.get('test', 'McNemar')} p = "
            f"{r['mcnemar_p']:.2g} on {r['only_chosen'] + r['only_rival']} differing examples); "
            f"to ship its plan, pass --method {r['method']}")


def knee_info(plan: dict) -> dict:
    k = plan.get("knee")
    return k if isinstance(k, dict) else ({"k": k} if isinstance(k, int) else {})



# ---- figures ---------------------------------------------------------------------------------
def knee_figure(plan: dict):
    """Selection-split accuracy (%) per head count, the polynomial fit, the dense model and the knee.

    ``plan``: plan.json as a dict (or a plan's ``meta``: the same keys). None when the plan has no curve.
    """
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
    if plan.get("selection_accuracy_dense") is not None:
        ax.axhline(100 * plan["selection_accuracy_dense"], color="gray", ls=":", label="dense")
    ax.set_xlabel("heads kept")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    method = plan.get("method")
    ax.set_title(f"{method}: accuracy vs heads kept" if method else "Accuracy vs heads kept")
    return fig


def heads_figure(plan: dict):
    """Kept (green) and removed heads, layer x head; layers may have different head counts."""
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
    return fig


def distance_figure(dist: np.ndarray, heads_per_layer: list[int]):
    """The head-to-head distance matrix (mean JSD), layer boundaries marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(np.asarray(dist), cmap="viridis")
    edges = np.cumsum(heads_per_layer)[:-1] - 0.5
    for e in edges:
        ax.axhline(e, color="white", lw=0.5)
        ax.axvline(e, color="white", lw=0.5)
    fig.colorbar(im, ax=ax, label="mean JSD (nats)")
    ax.set_title("head distance (layers marked)")
    fig.tight_layout()
    return fig


def compare_figure(rows: list[dict], dense: float | None = None, key: str = "eval_accuracy",
                   x: str = "heads"):
    """Accuracy vs heads kept (or vs ``x="speedup"`` for heads + neurons), one line per method
    (`cahp-edge compare`)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in rows}):
        rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r[x])
        ax.plot([r[x] for r in rs], [100 * r[key] for r in rs], "o-", label=method)
    if dense is not None:
        ax.axhline(100 * dense, color="gray", ls=":", label="dense")
    ax.set_xlabel("heads kept" if x == "heads" else "ideal speedup (MACs)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _acc_labels(acc: list[float]) -> list[str]:
    """Each bar's accuracy, and after the first (dense) its change in points."""
    return [f"{a:.3f}" if i == 0 else f"{a:.3f}\n({100 * (a - acc[0]):+.1f} pt)" for i, a in enumerate(acc)]


def bars_figure(metrics: dict[str, dict], labels: dict[str, str], colors: dict[str, str]):
    """Accuracy and latency (p50 bars, p90 ticks) of the dense, pruned and shipped models."""
    names = [n for n in ("dense", "pruned", "shipped") if n in metrics]
    if not names:
        return None
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.6, 3.2))
    acc = [metrics[n].get("accuracy") or 0.0 for n in names]
    lat = [(metrics[n].get("latency_ms") or {}).get("p50") or 0.0 for n in names]
    p90 = [(metrics[n].get("latency_ms") or {}).get("p90") or 0.0 for n in names]
    names_shown = [labels[n].replace(" (shipped)", "\n(shipped)") for n in names]
    shades = [colors[n] for n in names]
    bars = a1.bar(names_shown, acc, color=shades)
    a1.bar_label(bars, labels=_acc_labels(acc), fontsize=8)
    # a zoomed axis: on 0..1 a drop of one point is invisible, and that is the difference that matters
    lo, hi = min(acc), max(acc)
    pad = max(0.01, (hi - lo) * 0.8)
    a1.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) + pad * 0.6)
    a1.set_title("Accuracy (evaluation split; axis zoomed)")
    bars = a2.bar(names_shown, lat, color=shades, label="p50")
    a2.scatter(names_shown, p90, color="#333333", marker="_", s=400, label="p90", zorder=3)
    a2.bar_label(bars, fmt="%.2f", fontsize=8)
    a2.set_ylim(0, max(1e-6, max(lat + p90)) * 1.18)
    a2.set_title("Latency (ms)")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.tick_params(axis="x", labelsize=8)
        a.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig




def frontier_figure(plan: dict, metrics: dict[str, dict] | None = None):
    """Heads + neurons plans: accuracy against cost.

    Left: every budget the prune stage scored, selection-split accuracy (after the least-squares re-fit
    when the plan was judged so; masked beside it) against its predicted cost in the plan's cost model,
    the shipped plan and any rival at the same cost marked. Right: what the target measured on the
    evaluation split, accuracy against p50 latency, for dense fp32, pruned fp32 and the shipped model.
    None for head plans (:func:`knee_figure` draws those)."""
    pts = [p for p in plan.get("curve") or [] if isinstance(p, dict) and "cost" in p]
    if (plan.get("kept_neurons") is None and plan.get("units") != "heads+neurons") or not pts:
        return None
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    cost = plan.get("cost_model") or {}
    scale, unit = (1.0, "ms") if cost.get("unit") == "ms" else (1e-6, "M MACs")
    pts = sorted(pts, key=lambda p: p["cost"])
    xs = [scale * p["cost"] for p in pts]
    a1.plot(xs, [100 * p["accuracy"] for p in pts], "o-", color="#5b8def",
            label=f"{plan.get('method', '?')}: {plan.get('selection_accuracy_when', 'selection')}")
    if all("accuracy_masked" in p for p in pts):
        a1.plot(xs, [100 * p["accuracy_masked"] for p in pts], "x:", color="#9aa5b1", label="masked")
    chosen = next((p for p in pts if p.get("k") == plan.get("k_star")), None)
    if chosen is not None:
        a1.plot([scale * chosen["cost"]], [100 * chosen["accuracy"]], "*", ms=15, color="#1f9d55",
                label="shipped plan")
        for r in plan.get("rivals") or []:
            a1.plot([scale * chosen["cost"]], [100 * r["selection_accuracy"]], "d", color="#e07a1f")
            a1.annotate(r["method"], (scale * chosen["cost"], 100 * r["selection_accuracy"]), fontsize=7,
                        xytext=(4, -8), textcoords="offset points")
    if plan.get("selection_accuracy_dense") is not None:
        a1.axhline(100 * plan["selection_accuracy_dense"], color="gray", ls=":", label="dense")
    a1.set_xlabel(f"predicted cost ({unit}; {cost.get('source', 'cost model')[:40]}...)", fontsize=7)
    a1.set_ylabel(f"selection {plan.get('selection_measure', 'accuracy')} (%)", fontsize=7)
    a1.set_title("Budgets scored by the prune stage", fontsize=9)
    a1.legend(fontsize=7, loc="lower right")
    names = [n for n in ("dense", "pruned", "shipped") if n in (metrics or {})]
    for n, marker in zip(names, ("o", "s", "*"), strict=False):
        m = metrics[n]
        lat, acc = (m.get("latency_ms") or {}).get("p50"), m.get("accuracy")
        if lat is not None and acc is not None:
            a2.plot([lat], [100 * acc], marker, ms=14 if n == "shipped" else 9, label=n)
    a2.set_xlabel("p50 latency on the target's settings (ms)")
    a2.set_ylabel(f"evaluation {plan.get('metric', 'accuracy')} (x100)")
    a2.set_title("Measured (evaluation split)", fontsize=9)
    if names:
        a2.legend(fontsize=7, loc="lower right")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig
