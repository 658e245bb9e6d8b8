"""Issue 13, class 1 and 3: cahp-edge never deletes or replaces what it cannot prove it made, and a
release folder and its archive are one unit.

Each test takes several members of its class (folder layouts, name variants, commands) and compares a
before/after inventory (paths + hashes) of the inputs, --out and a user's sibling files.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from cahp_edge.release import package
from tests.helpers.build_tiny import TINY_CONFIG
from tests.hostile.support import fails_clean, run_cli, snapshot

TARGET = "host"


def _config(tmp_path: Path) -> Path:
    p = tmp_path / "build.toml"
    p.write_text(TINY_CONFIG)
    return p


def _build(ckpt, data, out, cfg, *extra) -> list:
    return ["build", "-q", "--model", ckpt, "--data", data / "train.tsv", "--eval", data / "dev.tsv",
            "--out", out, "--config", cfg, "--target", TARGET, *extra]


# ---- --out against the inputs, roots and home ------------------------------------------------------
@pytest.mark.parametrize("where", ["model itself", "inside the model", "contains the data", "data folder",
                                   "root", "home", "contains the config"])
def test_build_refuses_an_out_that_overlaps_an_input(where, ckpt, tiny_data, tmp_path, capsys, monkeypatch):
    cfg = _config(tmp_path)
    out = {"model itself": ckpt, "inside the model": ckpt / "dist", "contains the data": tiny_data.parent,
           "data folder": tiny_data, "root": Path("/"), "home": tmp_path / "home",
           "contains the config": cfg.parent}[where]
    if where == "home":
        out.mkdir()
        monkeypatch.setenv("HOME", str(out))
    want = {"root": "a filesystem root", "home": "your home folder"}.get(where, "the input")
    if where == "contains the config":  # config beside nothing else: only the config overlaps
        cfg = (tmp_path / "cfgdir").mkdir() or tmp_path / "cfgdir" / "build.toml"
        cfg.write_text(TINY_CONFIG)
        out = tmp_path / "cfgdir"
    fails_clean(_build(ckpt, tiny_data, out, cfg), capsys, want, tmp_path)


@pytest.mark.parametrize("command", ["export", "reshape", "prune"])
def test_overwrite_never_replaces_the_input_or_a_users_folder(command, ckpt, tiny_data, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text('{"num_heads": [4, 4, 4], "kept": [[0, 1], [2], [0, 3]]}')
    args = {"export": ["export", ckpt], "reshape": ["reshape", "--model", ckpt, "--plan", plan],
            "prune": ["prune", "--model", ckpt, "--data", tiny_data / "train.tsv", "--heads", "5"]}[command]
    # --out is the input checkpoint itself, with --overwrite: refused, the checkpoint untouched
    fails_clean([*args, "--out", ckpt, "--overwrite"], capsys, "the input", tmp_path)
    # --out is a user's folder: --overwrite does not extend to it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    fails_clean([*args, "--out", mine, "--overwrite"], capsys, "was not created by cahp-edge", tmp_path)


# ---- target / release names -------------------------------------------------------------------------
@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "con", "NUL.txt", "host.tar.gz", "x.partial",
                                  "-dash", ""])
def test_release_names_that_could_escape_or_collide_are_refused(name, ckpt, tiny_data, tmp_path, capsys):
    text = (Path(__file__).resolve().parents[2] / "targets" / "host.toml").read_text()
    prof = tmp_path / "evil.toml"
    prof.write_text(text.replace('name = "host"', f'name = "{name}"'))
    out = tmp_path / "dist"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    cfg = _config(tmp_path)
    argv = ["build", "-q", "--model", ckpt, "--data", tiny_data / "train.tsv", "--out", out, "--config", cfg,
            "--target", prof]
    fails_clean(argv, capsys, "name", tmp_path, code=(1, 2))


# ---- existing things at the release's place -----------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One finished tiny build (folder + archive + cache) that tests copy and then disturb."""
    from tests.helpers.build_tiny import make_checkpoint, make_data

    root = tmp_path_factory.mktemp("own")
    ck, data = make_checkpoint(root / "ck"), make_data(root / "data")
    cfg = _config(root)
    from cahp_edge.cli import main

    assert main([str(a) for a in _build(ck, data, root / "dist", cfg)]) in (0, None)
    return root, ck, data, cfg


def _copy(built, tmp_path) -> tuple[Path, Path, Path, Path]:
    root, ck, data, cfg = built
    out = tmp_path / "dist"
    shutil.copytree(root / "dist", out, symlinks=True)
    return out, ck, data, cfg


@pytest.mark.parametrize("layout", ["folder is the user's", "release plus a user file", "nested user file",
                                    "archive is the user's", "folder is a file", "archive is a folder"])
def test_a_build_never_replaces_a_users_folder_or_archive(layout, built, tmp_path, capsys):
    out, ck, data, cfg = _copy(built, tmp_path)
    d, tar = out / TARGET, out / f"{TARGET}.tar.gz"
    if layout == "folder is the user's":
        shutil.rmtree(d)
        d.mkdir()
        (d / "photo.jpg").write_bytes(b"\xff\xd8 not ours")
    elif layout == "release plus a user file":
        (d / "notes.txt").write_text("mine")
    elif layout == "nested user file":
        (d / "cahp_edge_runtime" / "my_patch.py").write_text("# mine")
    elif layout == "archive is the user's":
        with tarfile.open(tar, "w:gz") as tf:
            tf.add(__file__, arcname="other/thing.py")
    elif layout == "folder is a file":
        shutil.rmtree(d)
        d.write_text("a file named like the release")
    else:
        tar.unlink()
        tar.mkdir()
        (tar / "x").write_text("mine")
    # --force: the stages are cached; the package step must still refuse to replace what is not its own
    fails_clean([*_build(ck, data, out, cfg), "--force"], capsys, ["not", "Fix:"], tmp_path / "dist")


@pytest.mark.parametrize("disturb", ["archive from another build", "truncated archive", "archive deleted"])
def test_folder_and_archive_are_one_unit(disturb, built, tmp_path, capsys):
    """A re-run after the archive went out of step with the folder rebuilds it (never 'cached'), and the
    result equals an undisturbed build byte for byte."""
    root = built[0]
    out, ck, data, cfg = _copy(built, tmp_path)
    tar = out / f"{TARGET}.tar.gz"
    if disturb == "archive from another build":
        other = tmp_path / "other"
        package.write_release(other, TARGET, {"model.onnx": b"an older model"},
                              {"note": "older release of the same target"})
        shutil.copyfile(other / f"{TARGET}.tar.gz", tar)
    elif disturb == "truncated archive":
        data_bytes = tar.read_bytes()
        tar.write_bytes(data_bytes[: len(data_bytes) // 2])
    else:
        tar.unlink()
    assert not package.tarball_matches(out / TARGET, tar, TARGET)
    r = run_cli(_build(ck, data, out, cfg), capsys)
    assert r.code == 0, r.err
    assert package.tarball_matches(out / TARGET, tar, TARGET)
    package.verify(tar, smoke=False)
    # byte-identical to the uninterrupted build: the folder as it was, the archive rewritten from it
    assert snapshot(out / TARGET) == snapshot(root / "dist" / TARGET)
    assert tar.read_bytes() == (root / "dist" / f"{TARGET}.tar.gz").read_bytes()


def test_cache_folder_not_made_by_cahp_edge_is_refused(ckpt, tiny_data, tmp_path, capsys):
    out = tmp_path / "dist"
    (out / ".cahp-cache").mkdir(parents=True)
    (out / ".cahp-cache" / "my-backup.tar").write_text("mine")
    fails_clean(_build(ckpt, tiny_data, out, _config(tmp_path)), capsys, "was not created by cahp-edge",
                tmp_path)


def test_sibling_files_survive_a_successful_build(built, tmp_path, capsys):
    out, ck, data, cfg = _copy(built, tmp_path)
    user = {".host.abcd1234.partial": "looks like a temporary", ".host.old-1": "so does this",
            "host.tar.gz.partial": "and this", "README.txt": "mine"}
    for name, text in user.items():
        (out / name).write_text(text)
    before = {k: v for k, v in snapshot(out).items() if k in user}
    r = run_cli([*_build(ck, data, out, cfg), "--force"], capsys)
    assert r.code == 0, r.err
    assert {k: v for k, v in snapshot(out).items() if k in user} == before
