"""Build cache: keyed entries, hits, --force, damaged entries, interrupted stages, the OUT lock."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cahp_edge.build.cache import CACHE_DIR, BuildCache, build_lock, stage_key
from cahp_edge.errors import OutputError


def _writer(calls: list, text: str = "hello"):
    def fn(art: Path):
        calls.append(art)
        art.mkdir()
        (art / "a.txt").write_text(text)
        return {"n": len(text)}

    return fn


def test_hit_miss_force(tmp_path):
    cache, calls = BuildCache(tmp_path), []
    r1 = cache.run("prune", {"src": "h1", "opts": {"k": 3}}, _writer(calls))
    assert not r1.hit and r1.summary == {"n": 5} and (r1.path / "a.txt").read_text() == "hello"
    r2 = cache.run("prune", {"opts": {"k": 3}, "src": "h1"}, _writer(calls))  # key order does not matter
    assert r2.hit and r2.key == r1.key and r2.tree == r1.tree and len(calls) == 1
    r3 = cache.run("prune", {"src": "h1", "opts": {"k": 3}}, _writer(calls, "other"), force=True)
    assert not r3.hit and r3.key == r1.key and len(calls) == 2 and (r3.path / "a.txt").read_text() == "other"
    assert [p.name for p in (tmp_path / CACHE_DIR).iterdir()] == [f"prune-{r1.key}"]


def test_other_model_or_options_never_reuse(tmp_path):
    cache, calls = BuildCache(tmp_path), []
    a = cache.run("prune", {"src": "model-A"}, _writer(calls))
    b = cache.run("prune", {"src": "model-B"}, _writer(calls))
    c = cache.run("prune", {"src": "model-A", "seed": 1}, _writer(calls))
    assert len({a.key, b.key, c.key}) == 3 and len(calls) == 3
    assert stage_key("prune", {"src": "model-A"}) != stage_key("export", {"src": "model-A"})


def test_damaged_entry_is_recomputed(tmp_path):
    cache, calls = BuildCache(tmp_path), []
    r = cache.run("export", {"x": 1}, _writer(calls))
    (r.path / "a.txt").write_text("edited by hand")
    r2 = cache.run("export", {"x": 1}, _writer(calls))
    assert not r2.hit and len(calls) == 2 and (r2.path / "a.txt").read_text() == "hello"


def test_failed_stage_leaves_no_entry(tmp_path):
    cache = BuildCache(tmp_path)

    def boom(art: Path):
        art.mkdir()
        (art / "half").write_text("x")
        raise ValueError("stage failed")

    with pytest.raises(ValueError):
        cache.run("quantize", {"t": "x"}, boom)
    assert list((tmp_path / CACHE_DIR).iterdir()) == []

    def full(art: Path):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="disk full"):
        cache.run("quantize", {"t": "x"}, full)
    assert list((tmp_path / CACHE_DIR).iterdir()) == []


def test_partials_cleaned_and_unused_pruned(tmp_path):
    cache, calls = BuildCache(tmp_path), []
    cache.claim()
    keep = cache.run("a", {"v": 1}, _writer(calls))
    old = BuildCache(tmp_path).run("a", {"v": 0}, _writer(calls))
    (tmp_path / CACHE_DIR / ".a-123.xyz.partial").mkdir()  # what a killed stage leaves
    assert cache.clean_partials() == 1
    assert cache.prune_unused() == [old.path.parent.name]
    assert keep.path.is_dir() and not old.path.exists()


def test_second_build_on_same_out_is_refused(tmp_path):
    holder = textwrap.dedent(f"""
        import sys, time
        from cahp_edge.build.cache import build_lock
        with build_lock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"another cahp-edge build is writing to.*pid {p.pid}"), \
                build_lock(tmp_path):
            pass
    finally:
        p.kill()
        p.wait()
    with build_lock(tmp_path):  # the kernel dropped the dead holder's lock
        pass


def test_unwritable_out_is_clear(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match="cannot write to output folder"), build_lock(f / "sub"):
        pass


def test_workspace_sweeps_temporaries_a_signal_orphaned(tmp_path):
    # a signal between mkdtemp and the try that owns it orphans the folder; the workspace sweeps it, but
    # only inside its own tagged .cahp-cache: look-alike names of the user's beside the releases stay
    import tempfile

    from cahp_edge.build.pipeline import build_workspace

    mine = {".host.abcd1234.partial": "d", ".x86.old-77": "d", ".host.q.tar.gz.partial": "f",
            "notes.partial": "f"}
    for name, kind in mine.items():
        if kind == "d":
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text("user data")
    with pytest.raises(KeyboardInterrupt), build_workspace(tmp_path) as cache:
        tempfile.mkdtemp(prefix=".optimize-abc.", suffix=".partial", dir=cache.root)
        cache.scratch.mkdir(parents=True, exist_ok=True)
        tempfile.mkdtemp(prefix=".host.", suffix=".partial", dir=cache.scratch)
        raise KeyboardInterrupt
    assert [p.name for p in cache.root.rglob("*") if p.name.endswith(".partial")] == []
    assert {p.name for p in tmp_path.iterdir()} == {*mine, ".cahp-cache"}  # the user's entries untouched


def test_lock_file_is_removed_when_the_build_ends_and_a_stale_one_is_taken_over(tmp_path):
    from cahp_edge.build.cache import LOCK_FILE

    with build_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_FILE).exists()  # a finished build leaves no lock file behind
    with pytest.raises(RuntimeError), build_lock(tmp_path):
        raise RuntimeError("a failed build")
    assert not (tmp_path / LOCK_FILE).exists()
    (tmp_path / LOCK_FILE).write_text("12345\n")  # left by a killed build: not held, so it is taken over
    with build_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_file_replaced_between_open_and_lock_is_not_trusted(tmp_path, monkeypatch):
    """The race the removal opens: a build opens the old file, the holder removes it, a third build
    creates a new one. The first must notice its inode is no longer OUT's lock and take the new file."""
    from cahp_edge.build import cache
    from cahp_edge.build.cache import LOCK_FILE

    real_open, calls = cache._open_lock, []

    def open_then_replace(out, path):
        fd = real_open(out, path)
        calls.append(fd)
        if len(calls) == 1:  # first attempt: the file is swapped under us before we lock it
            path.unlink()
            path.write_text("")
        return fd

    monkeypatch.setattr(cache, "_open_lock", open_then_replace)
    with build_lock(tmp_path):
        assert len(calls) == 2  # retried on the new file
        st, own = os.stat(tmp_path / LOCK_FILE), os.fstat(calls[1])
        assert (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
    assert not (tmp_path / LOCK_FILE).exists()
