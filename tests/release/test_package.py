"""Release packages: manifest + checksums, verify (missing / changed / extra), safe extraction, atomicity."""

from __future__ import annotations

import errno
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from cahp_edge.errors import OutputError, PackageError
from cahp_edge.fsutil import sha256_file
from cahp_edge.release import package


def _release(dist: Path, target: str = "x86-64-avx2", payload: bytes = b"onnx-bytes") -> package.Release:
    src = dist.parent / "src.bin"
    dist.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(payload)
    files = {"model.onnx": src, "config.json": '{"model_type": "bert"}', "tokenizer/vocab.txt": b"[PAD]\n"}
    manifest = {"stages": {"prune": {"key": "abc", "options": {"seed": 0}}},
                "device": {"url": "ssh://pi:hunter2@raspberrypi:22", "ssh_key": "/home/u/.ssh/id_ed25519"},
                "hf_token": "hf_secret"}
    return package.write_release(dist, target, files, manifest)


def test_release_layout_manifest_and_sums(tmp_path):
    rel = _release(tmp_path / "dist")
    d = rel.dir
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) == [
        "SHA256SUMS", "config.json", "manifest.json", "model.onnx", "tokenizer/vocab.txt"]
    man = json.loads((d / "manifest.json").read_text())
    assert man["target"] == "x86-64-avx2" and man["format"] == package.MANIFEST_FORMAT
    for name, entry in man["files"].items():  # manifest hashes match the files
        assert entry["sha256"] == sha256_file(d / name) and entry["bytes"] == (d / name).stat().st_size
    sums = package.read_sums(d)
    assert set(sums) == {"config.json", "manifest.json", "model.onnx", "tokenizer/vocab.txt"}
    # secrets never reach the manifest
    text = (d / "manifest.json").read_text()
    assert "hunter2" not in text and "id_ed25519" not in text and "hf_secret" not in text
    assert "ssh://pi@raspberrypi:22" in text
    assert package.verify(d, smoke=False).files_checked == 4
    assert package.verify(rel.tarball, smoke=False).target == "x86-64-avx2"


def test_tarball_is_reproducible(tmp_path):
    a = _release(tmp_path / "a" / "dist").tarball
    b = _release(tmp_path / "b" / "dist").tarball
    assert sha256_file(a) == sha256_file(b)


def test_verify_reports_missing_changed_and_extra(tmp_path):
    d = _release(tmp_path / "dist").dir
    (d / "config.json").write_text('{"model_type": "evil"}')
    (d / "tokenizer" / "vocab.txt").unlink()
    (d / "run_me.sh").write_text("rm -rf /")
    with pytest.raises(PackageError) as e:
        package.verify(d, smoke=False)
    msg = str(e.value)
    assert "1 missing (tokenizer/vocab.txt)" in msg
    assert "1 changed (config.json)" in msg
    assert "1 extra (run_me.sh)" in msg


def test_verify_catches_manifest_sums_disagreement_and_missing_sums(tmp_path):
    d = _release(tmp_path / "dist").dir
    # tamper a file and rewrite SHA256SUMS to match: the manifest's table still disagrees
    (d / "model.onnx").write_bytes(b"other")
    lines = [ln if not ln.endswith("model.onnx") else f"{sha256_file(d / 'model.onnx')}  model.onnx"
             for ln in (d / "SHA256SUMS").read_text().splitlines()]
    (d / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    with pytest.raises(PackageError, match=r"manifest\.json and SHA256SUMS disagree"):
        package.verify(d, smoke=False)
    (d / "SHA256SUMS").unlink()
    with pytest.raises(PackageError, match="has no SHA256SUMS"):
        package.verify(d, smoke=False)


def test_sums_naming_unsafe_path_is_refused(tmp_path):
    d = _release(tmp_path / "dist").dir
    with open(d / "SHA256SUMS", "a") as f:
        f.write("0" * 64 + "  ../../etc/passwd\n")
    with pytest.raises(PackageError, match="malformed or names an unsafe path"):
        package.verify(d, smoke=False)


def _evil_tar(path: Path, kind: str) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("pkg/SHA256SUMS")
        ok.size = 0
        tf.addfile(ok, io.BytesIO(b""))
        if kind == "dotdot":
            ti = tarfile.TarInfo("pkg/../../escape.txt")
        elif kind == "absolute":
            ti = tarfile.TarInfo("/tmp/cahp-abs-escape.txt")
        elif kind == "symlink":
            ti = tarfile.TarInfo("pkg/link")
            ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            ti = tarfile.TarInfo("pkg/hard")
            ti.type, ti.linkname = tarfile.LNKTYPE, "pkg/SHA256SUMS"
        elif kind == "device":
            ti = tarfile.TarInfo("pkg/dev")
            ti.type = tarfile.CHRTYPE
        else:
            raise AssertionError(kind)
        data = b"x" if ti.type == tarfile.REGTYPE else b""
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind,why", [("dotdot", "'..' component"), ("absolute", "absolute path"),
                                      ("symlink", "symbolic link"), ("hardlink", "hard link"),
                                      ("device", "device file")])
def test_unsafe_archive_is_refused_and_nothing_written(tmp_path, kind, why):
    arc = _evil_tar(tmp_path / "evil.tar.gz", kind)
    dest = tmp_path / "x" / "y"
    dest.mkdir(parents=True)
    with pytest.raises(PackageError, match=why) as e:
        package.safe_extract(arc, dest)
    assert "refusing to extract evil.tar.gz" in str(e.value)
    assert list(dest.iterdir()) == []  # checked before a single byte is written
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "x" / "escape.txt").exists()
    with pytest.raises(PackageError, match="refusing to extract"):
        package.verify(arc, smoke=False)


def test_truncated_archive_is_a_clear_error(tmp_path):
    tar = _release(tmp_path / "dist").tarball
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(PackageError, match=r"truncated or corrupt|not a readable tar"):
        package.verify(cut, smoke=False)


def test_disk_full_while_packaging_leaves_previous_release(tmp_path, monkeypatch):
    dist = tmp_path / "dist"
    old = _release(dist, payload=b"old model")
    before = {p: sha256_file(p) for p in [*old.dir.rglob("*"), old.tarball] if p.is_file()}
    real = shutil.copyfile
    calls = {"n": 0}

    def full(src, dst, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 1:  # config.json has landed; copying model.onnx finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(OutputError, match="disk full"):
        _release(dist, payload=b"new model")
    monkeypatch.undo()
    after = {p: sha256_file(p) for p in [*old.dir.rglob("*"), old.tarball] if p.is_file()}
    assert after == before
    assert sorted(p.name for p in dist.iterdir()) == ["x86-64-avx2", "x86-64-avx2.tar.gz"]  # no temps


def test_disk_full_while_writing_tarball_leaves_no_release(tmp_path, monkeypatch):
    dist = tmp_path / "dist"

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "addfile", full)
    with pytest.raises(OutputError, match="disk full"):
        _release(dist)
    assert list(dist.iterdir()) == []  # complete or absent


def test_scrub_drops_secrets_keeps_rest():
    d = package.scrub({"password": "x", "opts": {"token": "t", "seed": 3}, "u": "https://a:b@h/x",
                       "l": [1, 2]})
    assert d == {"opts": {"seed": 3}, "u": "https://a@h/x", "l": [1, 2]}
