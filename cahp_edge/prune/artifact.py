"""What `cahp-edge prune` and the build's prune stage write: plan.json + curve / heads / distance PNGs."""

from __future__ import annotations

from pathlib import Path

from cahp_edge import plots
from cahp_edge.plan import PLAN_FILE, HeadPlan


def write_plan_dir(tmp: Path, plan: HeadPlan, sel_info_dist=None) -> list[str]:
    """plan.json and its pictures into ``tmp`` (a folder being filled atomically); returns the file names."""
    plan.save(tmp / PLAN_FILE)
    files = [PLAN_FILE]
    doc = plan.to_dict()  # the same view report.html draws from plan.json
    if (fig := plots.knee_figure(doc)) is not None:
        files.append(plots.save(fig, tmp / "curve.png").name)
    files.append(plots.save(plots.heads_figure(doc), tmp / "heads.png").name)
    if sel_info_dist is not None:
        fig = plots.distance_figure(sel_info_dist, list(plan.num_heads))
        files.append(plots.save(fig, tmp / "distance.png").name)
    return files
