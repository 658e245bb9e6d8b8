"""What `cahp-edge prune` and the build's prune stage write: plan.json + curve / heads / distance PNGs."""

from __future__ import annotations

from pathlib import Path

from cahp_edge.plan import PLAN_FILE, HeadPlan
from cahp_edge.prune import plots


def write_plan_dir(tmp: Path, plan: HeadPlan, sel_info_dist=None) -> list[str]:
    """plan.json and its pictures into ``tmp`` (a folder being filled atomically); returns the file names."""
    plan.save(tmp / PLAN_FILE)
    files = [PLAN_FILE]
    if plots.curve(tmp / "curve.png", plan.meta):
        files.append("curve.png")
    plots.heads(tmp / "heads.png", plan.mask(), f"{plan.meta.get('method', '')} kept heads")
    files.append("heads.png")
    if sel_info_dist is not None:
        plots.distance(tmp / "distance.png", sel_info_dist, list(plan.num_heads))
        files.append("distance.png")
    return files
