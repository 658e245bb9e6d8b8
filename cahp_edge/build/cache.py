"""Resumable build cache: one directory per finished stage, keyed by a hash of everything it depends on.

Layout under the build's output folder::

    OUT/.cahp-build.lock              fcntl lock: one build per OUT at a time
    OUT/.cahp-cache/prune-<key>/      stage.json (record) + artifact/ (what the stage wrote)

A key hashes the stage name, the code version (every source file of cahp_edge), the options, and
the content hashes of the inputs (source checkpoint, data files, upstream artifacts). So a cache
made for another model, other data, other options or other code is never reused: its key differs.
An entry is written in a temporary sibling and renamed into place; an interrupted stage leaves
only a temporary folder, which the next build removes. Re-running finds the finished stages and
resumes after the last one. On a hit the artifact's content hash is checked against its record,
so an entry edited or damaged by hand is recomputed instead of trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cahp_edge.errors import OutputError
from cahp_edge.fsutil import _disk_error, sha256_tree
from cahp_edge.lineage import StageRecord, canonical, code_version

CACHE_DIR = ".cahp-cache"
LOCK_FILE = ".cahp-build.lock"
RECORD = "stage.json"
ARTIFACT = "artifact"


def stage_key(stage: str, inputs: Mapping[str, Any]) -> str:
    doc = canonical({"stage": stage, "code": code_version(), "inputs": inputs})
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


# the standard cache-directory tag (bford.info/cachedir): backup tools skip the folder, and it is
# this tool's proof that it made .cahp-cache (only then does it clean or prune inside it)
TAG = "CACHEDIR.TAG"
TAG_TEXT = "Signature: 8a477f597d28d172789f06886806bc55\n# cahp-edge build cache: safe to delete\n"
SCRATCH = "tmp"  # temporaries of every kind (stage entries, releases, archives) live here only


class BuildCache:
    def __init__(self, out: Path) -> None:
        self.root = Path(out) / CACHE_DIR
        self.scratch = self.root / SCRATCH
        self.used: set[Path] = set()

    def claim(self) -> None:
        """Create the cache folder with its tag, or check that an existing one is ours."""
        tag = self.root / TAG
        if self.root.is_symlink() or (self.root.exists() and not self.root.is_dir()):
            raise OutputError(f"{self.root} exists and is not a cahp-edge cache folder", "",
                              "move it away or choose another --out")
        if self.root.is_dir() and not tag.is_file():
            foreign = [p.name for p in self.root.iterdir() if not _looks_like_entry(p)]
            if foreign:
                raise OutputError(f"{self.root} was not created by cahp-edge",
                                  f"it holds {', '.join(sorted(foreign)[:4])}; a build cleans inside it",
                                  "move that folder away or choose another --out")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not tag.is_file():
                tag.write_text(TAG_TEXT, encoding="utf-8")
        except OSError as e:
            raise _disk_error(self.root, e) from e

    def entry(self, stage: str, key: str) -> Path:
        return self.root / f"{stage}-{key}"

    def get(self, stage: str, key: str) -> StageRecord | None:
        d = self.entry(stage, key)
        try:
            rec = json.loads((d / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        art = d / ARTIFACT
        if not art.exists() or rec.get("key") != key or _tree(art) != rec.get("tree"):
            return None  # damaged or edited by hand: recompute, never trust
        self.used.add(d)
        return StageRecord(stage, key, art, rec["tree"], rec.get("summary", {}), rec.get("seconds", 0.0),
                           hit=True, inputs=rec.get("inputs", {}))

    def run(self, stage: str, inputs: Mapping[str, Any], fn: Callable[[Path], Mapping[str, Any] | None],
            force: bool = False) -> StageRecord:
        """Return the cached stage for these inputs, or run ``fn(artifact_dir)`` and cache what it wrote.

        ``fn`` must create ``artifact_dir`` (a path that does not exist yet) and may return a small
        JSON-able summary that is kept with the entry.
        """
        key = stage_key(stage, inputs)
        if not force and (hit := self.get(stage, key)) is not None:
            return hit
        final = self.entry(stage, key)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{stage}-{key}.", suffix=".partial", dir=self.root))
        except OSError as e:
            raise _disk_error(self.root, e) from e
        try:
            t0 = time.perf_counter()
            summary = dict(fn(tmp / ARTIFACT) or {})
            seconds = time.perf_counter() - t0
            art = tmp / ARTIFACT
            if not art.exists():
                # a bug in the stage, not something the user can fix
                raise RuntimeError(f"stage {stage} wrote nothing to {art}")
            tree = _tree(art)
            record = {"stage": stage, "key": key, "tree": tree, "seconds": seconds, "summary": summary,
                      "inputs": dict(inputs), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (tmp / RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
            if final.exists():  # --force over a finished entry
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
                raise _disk_error(final, e) from e
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.used.add(final)
        return StageRecord(stage, key, final / ARTIFACT, tree, summary, seconds, False, dict(inputs))

    def clean_partials(self) -> int:
        """Remove what interrupted stages left in the cache's own folders (call only under the lock);
        nothing outside .cahp-cache is ever swept."""
        n = 0
        if self.root.is_dir() and (self.root / TAG).is_file():
            for p in self.root.iterdir():
                if p.name.startswith(".") and (p.name.endswith(".partial") or ".old-" in p.name):
                    shutil.rmtree(p, ignore_errors=True)
                    n += 1
            if self.scratch.is_dir():
                for p in self.scratch.iterdir():
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            p.unlink()
                    n += 1
        return n

    def prune_unused(self) -> list[str]:
        """After a successful build: drop entries this build did not use (other options, older code)."""
        removed = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.is_dir() and not p.name.startswith(".") and p != self.scratch and p not in self.used:
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p.name)
        return sorted(removed)


def _tree(path: Path) -> str:
    if path.is_file():
        return sha256_tree(path.parent, (path.name,))
    return sha256_tree(path)


def _looks_like_entry(p: Path) -> bool:
    """A cache entry or temporary an older cahp-edge wrote (before the tag): adopted, not refused."""
    return (p.is_dir() and (p / RECORD).is_file()) or p.name == SCRATCH or (
        p.name.startswith(".") and (p.name.endswith(".partial") or ".old-" in p.name))


@contextlib.contextmanager
def build_lock(out: Path) -> Iterator[Path]:
    """Hold an exclusive lock on OUT for the whole build; a second build gets a clear OutputError.

    flock is released by the kernel when the process dies, so a killed build never leaves a held lock.
    The lock file is removed when the build ends (a finished build leaves no trace of it): a build
    that opened the file just before the removal sees that its inode is no longer OUT's lock file and
    takes the new one, so two builds never both believe they hold OUT.
    """
    out = Path(out)
    path = out / LOCK_FILE
    for _ in range(5):
        fd = _open_lock(out, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(f"another cahp-edge build is writing to {out}",
                              f"{path} is held by pid {holder}",
                              "wait for that build to finish, or pass another --out") from e
        if _same_file(fd, path):
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock: retry
    else:  # pragma: no cover - five lost races in a row
        raise OutputError(f"cannot lock output folder {out}", "its lock file keeps being replaced",
                          "make sure a single cahp-edge build writes to this --out")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield out
    finally:
        with contextlib.suppress(OSError):
            if _same_file(fd, path):
                path.unlink()  # still holding the lock: no other build can be between these two lines
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _open_lock(out: Path, path: Path) -> int:
    try:
        out.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"cannot write to output folder {out}", str(e),
                          "choose a writable --out folder") from e


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
