"""Paired comparison of two head selections on the same examples: exact McNemar test."""

from __future__ import annotations

import torch


def mcnemar(ref: torch.Tensor, other: torch.Tensor) -> dict:
    """Exact McNemar test of two classifiers' (N,) bool correctness on the same examples."""
    from scipy.stats import binomtest

    only_ref, only_this = int((ref & ~other).sum()), int((~ref & other).sum())
    n = only_ref + only_this
    return {
        "only_reference": only_ref,
        "only_this": only_this,
        "mcnemar_p": float(binomtest(only_ref, n).pvalue) if n else 1.0,
    }
