"""python bench/recovery_seeds.py RESULT.json [RESULT.json ...]   (not run by CI)

Pools the recovery rows of several bench/quality.py runs that differ only in ``--recover-seed`` (same
model, calibration, selection split, plans) and reports, per budget: each method's dev accuracy after
recovery (mean, standard deviation over seeds, every seed), and CAHP minus each baseline *paired by
seed* (the same recovery seed gives both models the same batch order): mean difference, seeds where
CAHP is at or above, and a two-sided paired t-test. Seeds are the unit of replication here, so the
test says whether the gap is larger than the seed-to-seed spread of recovery.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def pool(results: list[dict]) -> dict[tuple[str, int], dict[int, float]]:
    """(method, heads) -> {seed: dev % after recovery}; a seed seen twice for one cell is an error."""
    cells: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    for res in results:
        for r in res.get("recovery", []):
            cell = cells[(r["method"], int(r["heads"]))]
            if r["seed"] in cell:
                raise SystemExit(f"seed {r['seed']} appears twice for {r['method']} at {r['heads']} heads")
            cell[r["seed"]] = 100 * r["dev_recovered"]
    return cells


def report(cells: dict[tuple[str, int], dict[int, float]], reference: str = "cahp") -> str:
    from scipy.stats import ttest_rel

    lines = []
    for k in sorted({h for _, h in cells}, reverse=True):
        lines.append(f"## {k} heads")
        methods = sorted((m for m, h in cells if h == k), key=lambda m: (m != reference, m))
        for m in methods:
            v = cells[(m, k)]
            xs = [v[s] for s in sorted(v)]
            sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
            lines.append(f"{m:10s} mean {statistics.mean(xs):5.2f} sd {sd:4.2f} n {len(xs)}  "
                         + " ".join(f"{x:.1f}" for x in xs))
        ref = cells.get((reference, k), {})
        for m in methods[1:]:
            seeds = sorted(set(ref) & set(cells[(m, k)]))
            if len(seeds) < 2:
                continue
            a = [ref[s] for s in seeds]
            b = [cells[(m, k)][s] for s in seeds]
            diff = [x - y for x, y in zip(a, b, strict=True)]
            p = ttest_rel(a, b).pvalue
            at_or_above = sum(d >= -1e-9 for d in diff)
            lines.append(f"  {reference} - {m}: mean {statistics.mean(diff):+.2f} "
                         f"(seeds at or above {at_or_above}/{len(seeds)}, paired t p = {p:.2f})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+")
    ap.add_argument("--reference", default="cahp")
    a = ap.parse_args()
    print(report(pool([json.loads(Path(f).read_text()) for f in a.results]), a.reference))


if __name__ == "__main__":
    main()
