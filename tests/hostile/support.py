"""Shared pieces of the hostile-input suite: run the CLI in-process, snapshot folders (fixtures: conftest.py).

Every hostile test calls :func:`fails`, which runs ``cahp-edge ARGV`` through ``cahp_edge.cli.main``
and asserts the contract of issue 7: the expected exit code, exactly one non-empty stderr line
``error: ...`` containing the expected substring, no traceback. ``snapshot`` hashes every file and
folder under a root (hidden ones included), so "nothing changed, no partial output" is one equality.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
CLI = REPO / ".venv" / "bin" / "cahp-edge"
# what cli.main() sets before a real run imports transformers; in-process, fixtures import it first
for _k, _v in (
    ("TRANSFORMERS_VERBOSITY", "error"),
    ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
    ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
):
    os.environ.setdefault(_k, _v)


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run_cli(argv: list[str], capsys) -> Ran:
    """``cahp-edge ARGV`` in this process; main() returns 0 on success and sys.exit()s otherwise."""
    from cahp_edge.cli import main

    capsys.readouterr()
    code = 0
    try:
        rc = main([str(a) for a in argv])
        code = rc or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    cap = capsys.readouterr()
    return Ran(code, cap.out, cap.err)


def assert_one_line_error(err: str, substr: str | list[str]) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("error: "), line
    for s in [substr] if isinstance(substr, str) else substr:
        assert s.lower() in line.lower(), f"{s!r} not in {line!r}"
    return line


def _record(entry: dict) -> None:
    """Append what a `fails` call saw to $CAHP_HOSTILE_RECORD (JSON lines) for tests/hostile/README.md."""
    out = os.environ.get("CAHP_HOSTILE_RECORD")
    if out:
        import json

        entry["test"] = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def fails(argv: list[str], capsys, substr: str | list[str], code: int | tuple[int, ...] = 1) -> str:
    """Run the CLI, assert exit ``code`` (or one of them) and one clean error line holding ``substr``."""
    r = run_cli(argv, capsys)
    entry = {"command": str(argv[0]), "code": r.code, "stderr": r.err.strip(), "clean": False}
    try:
        codes = (code,) if isinstance(code, int) else code
        assert r.code in codes, f"exit {r.code} (wanted {code}); stderr:\n{r.err}"
        line = assert_one_line_error(r.err, substr)
        entry["clean"] = True
        return line
    finally:
        _record(entry)


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> content hash ('dir' for folders, 'link:...' for symlinks), hidden entries included."""
    root = Path(root)
    state = {}
    if not root.exists():
        return state
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if "__pycache__" in p.parts:
                continue
            if p.is_symlink():
                state[rel] = f"link:{os.readlink(p)}"
            elif p.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


def fails_clean(
    argv: list[str], capsys, substr: str | list[str], root: Path, code: int | tuple[int, ...] = 1
) -> str:
    """:func:`fails`, and nothing under ``root`` was created, changed or removed."""
    before = snapshot(root)
    line = fails(argv, capsys, substr, code)
    after = snapshot(root)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:6]}"
    return line
