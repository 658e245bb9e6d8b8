"""Issue 13, class 3: an interrupt at every stage boundary — and between publishing the release folder
and its archive — followed by a plain re-run gives the release an uninterrupted build gives.

The interrupt is raised exactly at the boundary (a KeyboardInterrupt from the build's stage event, as
Ctrl-C or SIGTERM arrives there), in-process and deterministic. Files that carry measurements of the run
itself (latency, stage seconds: metrics.json, manifest.json, MODEL_CARD.md, report.html, SHA256SUMS,
cahp_heads.json's timings) are
compared by what they report (accuracy, heads, files); every other file must be byte-identical, and the
archive must always hold exactly the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cahp_edge.build.options import make_options
from cahp_edge.build.pipeline import Events, build
from cahp_edge.release import package
from tests.helpers.build_tiny import TINY_CONFIG
from tests.hostile.support import snapshot

TARGET = "host"
MEASURED = {"metrics.json", "manifest.json", "MODEL_CARD.md", "report.html", "SHA256SUMS",
            "cahp_heads.json"}  # the last holds selection timings next to the heads
STAGES = ["data", "check", "prune", "reshape", "recover", "export", "optimize", "export-dense",
          "optimize-dense", "quantize", "validate", "package"]


class _KillAfter(Events):
    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def stage(self, rec, line: str) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt  # right after stage n was recorded: the boundary


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_ckpt_master):
    import shutil

    from tests.helpers.build_tiny import make_data

    root = tmp_path_factory.mktemp("killpts")
    shutil.copytree(tiny_ckpt_master, root / "ck")
    make_data(root / "data")
    (root / "build.toml").write_text(TINY_CONFIG)
    return root


def _opts(root: Path, out: Path):
    return make_options({"model": str(root / "ck"), "data": str(root / "data" / "train.tsv"),
                         "eval": str(root / "data" / "dev.tsv"), "targets": [TARGET], "out": str(out)},
                        root / "build.toml")


@pytest.fixture(scope="module")
def reference(inputs):
    out = inputs / "reference"
    res = build(_opts(inputs, out))
    assert [n.split(":")[0] for n in res.stages] == STAGES
    return out


def _same_release(got: Path, want: Path) -> None:
    g, w = snapshot(got / TARGET), snapshot(want / TARGET)
    assert set(g) == set(w), sorted(set(g) ^ set(w))
    differ = sorted(k for k in g if g[k] != w[k] and k not in MEASURED)
    assert differ == [], f"files that should be byte-identical differ: {differ}"
    gh, wh = (json.loads((d / TARGET / "cahp_heads.json").read_text()) for d in (got, want))
    assert gh["kept"] == wh["kept"]
    gm, wm = (json.loads((d / TARGET / "metrics.json").read_text()) for d in (got, want))
    for model in ("dense", "pruned", "shipped"):
        assert gm["models"][model]["accuracy"] == wm["models"][model]["accuracy"], model
    assert package.tarball_matches(got / TARGET, got / f"{TARGET}.tar.gz", TARGET)
    package.verify(got / f"{TARGET}.tar.gz", smoke=False)
    assert not [k for k in snapshot(got) if k.endswith(".partial") or ".old-" in k]


@pytest.mark.parametrize("boundary", range(1, len(STAGES) + 1), ids=[f"after-{s}" for s in STAGES])
def test_interrupt_at_every_stage_boundary_then_rerun(boundary, inputs, reference, tmp_path):
    out = tmp_path / "dist"
    with pytest.raises(KeyboardInterrupt):
        build(_opts(inputs, out), events=_KillAfter(boundary))
    res = build(_opts(inputs, out))
    assert sum(r.hit for r in res.stages.values()) >= boundary - 1  # finished stages were resumed
    _same_release(out, reference)


def test_interrupt_between_the_folder_and_the_archive(inputs, reference, tmp_path, monkeypatch):
    out = tmp_path / "dist"
    real = os.replace

    def cut(src, dst, *a, **k):
        if str(dst).endswith(f"{TARGET}.tar.gz"):
            raise KeyboardInterrupt  # the new folder is in place, the archive not yet
        return real(src, dst, *a, **k)

    monkeypatch.setattr(package.os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        build(_opts(inputs, out))
    monkeypatch.setattr(package.os, "replace", real)
    assert (out / TARGET).is_dir() and not (out / f"{TARGET}.tar.gz").exists()
    res = build(_opts(inputs, out))
    assert res.stages[f"package:{TARGET}"].hit  # the folder was complete: only the archive is rewritten
    _same_release(out, reference)
