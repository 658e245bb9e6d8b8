"""Head graph: affinity from JSD distances, and clustering (spectral by default, or agglomerative).

Affinity is a Gaussian kernel on the metric distance d (sqrt of mean JSD):
``A_ij = exp(-d_ij^2 / (2 sigma^2))`` with sigma the median off-diagonal distance (self-tuning enough
for a graph of a few hundred heads); ``A_ii = 1``.
"""

from __future__ import annotations

import warnings

import numpy as np

CLUSTERINGS = ("spectral", "agglomerative")


def affinity(dist: np.ndarray, sigma: float | None = None) -> np.ndarray:
    d = np.asarray(dist, dtype=np.float64)
    n = d.shape[0]
    if sigma is None:
        off = d[~np.eye(n, dtype=bool)]
        sigma = float(np.median(off)) if off.size else 1.0
    sigma = max(sigma, 1e-12)
    a = np.exp(-(d**2) / (2 * sigma**2))
    np.fill_diagonal(a, 1.0)
    return a


def cluster(dist: np.ndarray, k: int, method: str = "spectral", seed: int = 0) -> np.ndarray:
    """Labels 0..k-1 for each of the N heads. ``k`` is clipped to [1, N]."""
    d = np.asarray(dist, dtype=np.float64)
    n = d.shape[0]
    k = int(min(max(k, 1), n))
    if k == n:
        return np.arange(n)
    if k == 1:
        return np.zeros(n, dtype=int)
    if method == "spectral":
        from sklearn.cluster import SpectralClustering

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "graph is not fully connected" is harmless here
            sc = SpectralClustering(
                n_clusters=k, affinity="precomputed", random_state=seed, assign_labels="cluster_qr"
            )
            labels = sc.fit_predict(affinity(d))
    elif method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=k, metric="precomputed", linkage="average").fit_predict(d)
    else:
        raise ValueError(f"unknown clustering {method!r}; choose one of {CLUSTERINGS}")
    return _canonical(labels)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters by first appearance so equal partitions give equal label arrays."""
    seen: dict[int, int] = {}
    return np.array([seen.setdefault(int(v), len(seen)) for v in labels])
