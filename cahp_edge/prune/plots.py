"""PNG plots of a head plan (matplotlib, Agg backend: no display needed).

- ``curve.png``: selection accuracy vs heads kept, the polynomial fit and the knee.
- ``heads.png``: kept-heads heatmap, layer x head.
- ``distance.png``: the head-to-head distance matrix (mean JSD), layer boundaries marked.
- ``compare.png``: accuracy vs heads for several methods (``cahp-edge compare``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve(path: Path, meta: dict) -> Path | None:
    pts = meta.get("curve") or []
    if len(pts) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [p["heads"] for p in pts]
    ax.plot(ks, [100 * p["accuracy"] for p in pts], "o", label="measured (selection split)")
    fitted = meta.get("fitted_curve") or []
    if fitted:
        ax.plot(
            [k for k, _ in fitted], [v for _, v in fitted], "-", label=f"degree-{meta['knee']['degree']} fit"
        )
    if "k_star" in meta:
        ax.axvline(meta["k_star"], color="tab:red", ls="--", label=f"chosen k* = {meta['k_star']}")
    if "selection_accuracy_dense" in meta:
        ax.axhline(100 * meta["selection_accuracy_dense"], color="gray", ls=":", label="dense")
    ax.set_xlabel("heads kept")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{meta.get('method', '')}: accuracy vs heads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def heads(path: Path, mask: list[list[float]], title: str = "kept heads") -> Path:
    plt = _plt()
    m = np.asarray(mask, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * m.shape[1] + 1.5), max(3, 0.35 * m.shape[0] + 1.2)))
    ax.imshow(m, cmap="Greens", vmin=0, vmax=1, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(m.shape[0]))
    ax.set_title(f"{title}: {int(m.sum())}/{m.size}; per layer {m.sum(1).astype(int).tolist()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def distance(path: Path, dist: np.ndarray, heads_per_layer: list[int]) -> Path:
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare(path: Path, rows: list[dict], dense: float | None = None, key: str = "eval_accuracy") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in rows}):
        rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["heads"])
        ax.plot([r["heads"] for r in rs], [100 * r[key] for r in rs], "o-", label=method)
    if dense is not None:
        ax.axhline(100 * dense, color="gray", ls=":", label="dense")
    ax.set_xlabel("heads kept")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
