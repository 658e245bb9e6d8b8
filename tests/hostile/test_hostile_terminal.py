"""Issue 13, class 6: names that come from input never reach the terminal raw. Escape sequences,
bell, bidi overrides and newlines in archive member names, paths and folder names are shown as escapes
(`\\x1b`), on every output path (error line, human result, JSON)."""

from __future__ import annotations

import io
import tarfile

import pytest

from tests.hostile.support import fails, run_cli

NASTY = {
    "escape": "a\x1b[2J\x1b[32mOK\x1b[0m.onnx",  # clears the screen and paints a green OK
    "bell": "b\x07.onnx",
    "bidi": "c\u202egnp.exe",  # displays reversed
    "newline": "d\nerror: none, all OK",  # a fake second line
    "c1": "e\x9b31m.onnx",  # the 8-bit CSI
}


def _raw(text: str) -> list[str]:
    return [ch for ch in text if (ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) < 0xA0
            or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"]


@pytest.mark.parametrize("kind", sorted(NASTY))
def test_verify_escapes_archive_member_names(kind, tmp_path, capsys):
    name = NASTY[kind]
    tar = tmp_path / "rel.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        for member in ("rel/", f"rel/{name}"):
            info = tarfile.TarInfo(member.rstrip("/"))
            if member.endswith("/"):
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                data = b"x"
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        # and an unsafe member, so verify refuses the archive and names members in its error
        info = tarfile.TarInfo(f"../{name}")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    line = fails(["verify", tar], capsys, "", code=1)
    assert not _raw(line) and "unsafe member" in line, repr(line)  # named, but escaped


@pytest.mark.parametrize("kind", sorted(NASTY))
def test_error_lines_escape_paths_from_the_command_line(kind, tmp_path, capsys):
    missing = tmp_path / NASTY[kind].replace("\n", "_n_") / "model"  # a folder name can hold anything but /
    r = run_cli(["inspect", str(missing) + NASTY[kind].replace("/", "")], capsys)
    assert r.code == 1 and r.err.count("\n") == 1, repr(r.err)
    assert not _raw(r.err), repr(r.err)
