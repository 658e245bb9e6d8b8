"""Paired comparison of two selections on the same examples: exact McNemar test for 1/0 outcomes
(classifiers), Wilcoxon signed-rank for per-example scores (embedding cosines, token agreement)."""

from __future__ import annotations

import torch


def is_binary(x: torch.Tensor) -> bool:
    return x.dtype == torch.bool or bool(((x == 0) | (x == 1)).all())


def mcnemar(ref: torch.Tensor, other: torch.Tensor) -> dict:
    """Exact McNemar test of two classifiers' (N,) correctness (bool or 1/0) on the same examples; for
    continuous (N,) scores the Wilcoxon signed-rank test, reported as ``wilcoxon_p`` instead."""
    from scipy.stats import binomtest, wilcoxon

    if not (is_binary(ref) and is_binary(other)):
        d = (ref.double() - other.double()).numpy()
        n = int((d != 0).sum())
        return {"only_reference": int((d > 0).sum()), "only_this": int((d < 0).sum()),
                "wilcoxon_p": float(wilcoxon(d[d != 0]).pvalue) if n else 1.0}
    ref, other = ref.bool(), other.bool()
    only_ref, only_this = int((ref & ~other).sum()), int((~ref & other).sum())
    n = only_ref + only_this
    return {
        "only_reference": only_ref,
        "only_this": only_this,
        "mcnemar_p": float(binomtest(only_ref, n).pvalue) if n else 1.0,
    }


def p_value(test: dict) -> float:
    """The p-value of a :func:`mcnemar` result, whichever test made it."""
    return float(test.get("mcnemar_p", test.get("wilcoxon_p", 1.0)))


def _test_name(test: dict) -> str:
    return "McNemar" if "mcnemar_p" in test else "Wilcoxon signed-rank"
