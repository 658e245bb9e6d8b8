"""Filesystem helpers: atomic files and directories, hashing, output-location checks, ownership.

Every stage writes into a temporary sibling and renames it into place, so an output is either
complete or absent (a crash, Ctrl-C or a full disk never leaves half a directory behind).

Ownership (the one rule every command follows): an existing output folder is replaced only when the
tool can prove it made it — it is empty, holds the marker file :data:`OWNER_MARK` that
:func:`atomic_dir` writes into every folder it creates, or the caller's own proof (a release's
manifest). ``--overwrite`` never extends to a user's folder, and an ``--out`` that is, contains or lies
inside an input, a filesystem root or the home folder is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cahp_edge.errors import OutputError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: Path, patterns: tuple[str, ...] = ("*",)) -> str:
    """Hash of relative paths + contents of every regular file under root matching patterns."""
    h = hashlib.sha256()
    files = sorted({p for pat in patterns for p in root.rglob(pat) if p.is_file()})
    for p in files:
        h.update(p.relative_to(root).as_posix().encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def _disk_error(path: Path, e: OSError) -> OutputError:
    if e.errno == errno.ENOSPC:
        return OutputError(f"disk full while writing {path}", str(e), "free space or choose another --out")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}", str(e), "choose a writable --out folder")
    if e.errno == errno.ENAMETOOLONG:
        return OutputError(f"a file name under {path} is too long for this filesystem", str(e),
                           "use a shorter --out path or target name")
    if e.errno == errno.EDQUOT:
        return OutputError(f"disk quota exceeded while writing {path}", str(e),
                           "free space or ask for more quota")
    return OutputError(f"could not write {path}", str(e), "check the output location")


def os_error_line(e: OSError) -> OutputError:
    """Any OSError that reached the command line, as the one-line error with a hint that fits its errno."""
    where = Path(e.filename) if e.filename else Path(".")
    if e.errno == errno.ENOENT:
        return OutputError(f"{where} does not exist", e.strerror or str(e), "check the path")
    return _disk_error(where, e)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _disk_error(path, e) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


OWNER_MARK = ".cahp-edge-output"  # written into every folder atomic_dir creates: proof it is ours


def owned(d: Path) -> bool:
    """True when folder ``d`` carries the marker atomic_dir writes (cahp-edge created it)."""
    try:
        return (d / OWNER_MARK).read_text(encoding="utf-8").startswith("cahp-edge")
    except (OSError, UnicodeDecodeError):
        return False


def _within(a: Path, b: Path) -> bool:
    """a is b or lies inside b (resolved paths)."""
    return a == b or b in a.parents


def check_not_input(out: Path, inputs=()) -> None:
    """Refuse an output location that is, contains or lies inside an input, a filesystem root or home."""
    o = Path(out).expanduser().resolve()
    if o == Path(o.anchor) or o == Path.home().resolve():
        what = "a filesystem root" if o == Path(o.anchor) else "your home folder"
        raise OutputError(f"--out {out} is {what}",
                          "an output folder there could replace or mix with your files",
                          "pass a new folder, e.g. --out dist")
    for spec in inputs:
        if spec is None:
            continue
        p = Path(spec).expanduser()
        if not p.exists():
            continue  # a hub id or a missing file: nothing on disk to overlap
        i = p.resolve()
        if _within(o, i) or _within(i, o):
            where = "is" if o == i else ("lies inside" if _within(o, i) else "contains")
            raise OutputError(f"--out {out} {where} the input {spec}",
                              "writing there could replace or delete the input",
                              "choose an --out folder apart from every input")


def check_output_dir(out: Path, overwrite: bool = False, inputs=()) -> None:
    """Refuse an existing non-empty output folder unless ``overwrite`` is set *and* cahp-edge made it;
    refuse an ``out`` that overlaps an input (see :func:`check_not_input`)."""
    out = Path(out)
    check_not_input(out, inputs)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a directory", "", "choose another --out path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputError(f"output folder {out} exists and is not empty", "refusing to overwrite it",
                              "choose a new --out folder, remove it, or pass --overwrite")
        if not owned(out):
            raise OutputError(f"output folder {out} was not created by cahp-edge",
                              f"--overwrite only replaces folders cahp-edge made (they hold {OWNER_MARK})",
                              "choose a new --out folder, or move that folder's contents away yourself")
    parent = out.parent if out.parent != Path("") else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise OutputError(f"output folder {out} is not writable", f"no write permission on {probe}",
                          "choose a writable --out folder")


@contextlib.contextmanager
def atomic_dir(out: Path, overwrite: bool = False, mark: bool = True, scratch: Path | None = None
               ) -> Iterator[Path]:
    """Yield a temp dir next to ``out``; on success rename it to ``out``; on failure delete it.

    ``mark``: write :data:`OWNER_MARK` into it (callers with their own proof of ownership, like a
    release and its manifest, pass False and check before calling). ``scratch``: a folder the caller
    owns (same filesystem) for the temporary and the replaced old copy, so nothing temporary ever
    appears beside the user's files."""
    out = Path(out)
    if mark:
        check_output_dir(out, overwrite)
    where = Path(scratch) if scratch is not None else out.parent
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        where.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=where))
        # mkdtemp makes 0700; a finished output should get the usual mode (0777 less the umask)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        if mark:
            (tmp / OWNER_MARK).write_text("cahp-edge: this folder was written by cahp-edge; --overwrite may "
                                          "replace it\n", encoding="utf-8")
    except OSError as e:
        raise _disk_error(out, e) from e
    try:
        yield tmp
        old = None
        if out.exists():
            old = where / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _disk_error(out, e) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
