"""Bounded verify (issue 13, class 4 and 7): checksums are checked while streaming the archive (nothing
written), member counts and sizes are capped before work, and the smoke run's accuracy on the bundled
eval rows must match metrics.json (a model swapped with recomputed checksums is caught)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest

from cahp_edge.errors import PackageError
from cahp_edge.fsutil import sha256_file
from cahp_edge.release import package

pytestmark = pytest.mark.slow  # uses the session's tiny pair-task build


def test_archive_checksums_are_streamed_without_writing(pair_release, monkeypatch):
    _, rel = pair_release
    tar = rel.parent / "host.tar.gz"

    def no_disk(*a, **k):
        raise AssertionError("verify wrote the archive to disk for a checksum-only check")

    monkeypatch.setattr(package, "safe_extract", no_disk)
    r = package.verify(tar, smoke=False)
    assert r.files_checked == len(package.read_sums(rel)) and r.target == "host"


def test_member_count_is_capped_before_work(tmp_path, monkeypatch):
    monkeypatch.setattr(package, "MAX_MEMBERS", 5)
    tar = tmp_path / "many.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        for i in range(8):
            info = tarfile.TarInfo(f"host/f{i}.txt")
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(PackageError, match="more than 5 members"):
        package.verify(tar, smoke=False)
    assert list(tmp_path.iterdir()) == [tar]


def _rechecksum(rel, name: str) -> None:
    """What a tamperer does after editing ``name``: recompute SHA256SUMS and the manifest's table."""
    man = json.loads((rel / "manifest.json").read_text())
    man["files"][name] = {"sha256": sha256_file(rel / name), "bytes": (rel / name).stat().st_size}
    (rel / "manifest.json").write_text(json.dumps(man, indent=2))
    sums = package.read_sums(rel)
    sums.update({name: sha256_file(rel / name), "manifest.json": sha256_file(rel / "manifest.json")})
    (rel / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())))


def test_smoke_accuracy_must_match_metrics(pair_release, tmp_path):
    _, built = pair_release
    rel = tmp_path / "host"
    shutil.copytree(built, rel)
    r = package.verify(rel, smoke=True)  # as built: the smoke run reproduces metrics.json
    tol = package.SMOKE_ACCURACY_TOLERANCE
    assert r.smoke["accuracy"] == pytest.approx(r.smoke["expected_accuracy"], abs=tol)
    assert r.smoke["n"] == len((rel / "eval.jsonl").read_text().splitlines())
    # the model that was measured is not the one shipped: here the record is changed to say so
    metrics = json.loads((rel / "metrics.json").read_text())
    got = r.smoke["accuracy"]
    metrics["models"]["shipped"]["accuracy"] = got + 0.25 if got < 0.5 else got - 0.25
    (rel / "metrics.json").write_text(json.dumps(metrics))
    _rechecksum(rel, "metrics.json")
    package.check_files(rel)  # the checksums are fooled
    with pytest.raises(PackageError, match="the model is not the one that was measured"):
        package.verify(rel, smoke=True)
