"""Signed releases (issue 13, class 7): OpenSSH Ed25519 signatures over SHA256SUMS. The right key passes;
a wrong key, a missing signature when a key is required, and a swapped model with recomputed checksums
are all refused — by `cahp-edge verify` and by the release's own torch-free runner."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cahp_edge.errors import PackageError
from cahp_edge.fsutil import sha256_file
from cahp_edge.release import package
from cahp_edge.release.signing import SIGNATURE, keygen

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                reason="ssh-keygen (OpenSSH) is not installed")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return keygen(d / "good"), keygen(d / "other")


@pytest.fixture(scope="module")
def tiny_pkg(tmp_path_factory):
    from tests.helpers.tiny_package import make_tiny_package

    return make_tiny_package(tmp_path_factory.mktemp("signpkg") / "pkg", n_eval=6)


def _release(tmp_path: Path, pkg: Path, sign_key: Path | None) -> package.Release:
    from cahp_edge.release.runner import device_files

    files = {p.name: p for p in pkg.iterdir() if p.is_file()} | device_files()
    return package.write_release(tmp_path / "dist", "host", files, {"note": "signed test"}, sign_key=sign_key)


def test_keygen_makes_a_private_key_only_its_owner_reads_and_never_overwrites(keys, tmp_path):
    (priv, pub), _ = keys
    assert priv.stat().st_mode & 0o077 == 0 and pub.read_text().startswith("ssh-ed25519 ")
    r = subprocess.run([sys.executable, "-m", "cahp_edge", "keygen", "--out", str(priv)], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "never overwritten" in r.stderr


def test_signed_release_verifies_with_its_key_only(keys, tiny_pkg, tmp_path):
    (priv, pub), (_, other_pub) = keys
    rel = _release(tmp_path, tiny_pkg, priv)
    assert (rel.dir / SIGNATURE).is_file()
    for target in (rel.dir, rel.tarball):  # the folder and the archive (the signature travels inside)
        assert package.verify(target, smoke=False, public_key=pub).files_checked == len(rel.files)
        with pytest.raises(PackageError, match="not signed by that key"):
            package.verify(target, smoke=False, public_key=other_pub)
    assert package.tarball_matches(rel.dir, rel.tarball, "host")
    # the private key is read by ssh-keygen only: no file of the release holds any of it
    secret = "".join(priv.read_text().splitlines()[1:-1])[:40]
    assert not any(secret in p.read_text(errors="ignore") for p in rel.dir.rglob("*") if p.is_file())


def test_unsigned_release_is_refused_when_a_key_is_required(keys, tiny_pkg, tmp_path):
    (_, pub), _ = keys
    rel = _release(tmp_path, tiny_pkg, None)
    package.verify(rel.dir, smoke=False)  # fine without a key
    with pytest.raises(PackageError, match="is not signed"):
        package.verify(rel.dir, smoke=False, public_key=pub)


def _swap_model(rel: Path) -> None:
    """A tamperer replaces the model and recomputes every checksum (SHA256SUMS and the manifest table)."""
    (rel / "model.onnx").write_bytes((rel / "model.onnx").read_bytes()[:-16] + b"\0" * 16)
    man = json.loads((rel / "manifest.json").read_text())
    model = rel / "model.onnx"
    man["files"]["model.onnx"] = {"sha256": sha256_file(model), "bytes": model.stat().st_size}
    (rel / "manifest.json").write_text(json.dumps(man, indent=2))
    sums = package.read_sums(rel)
    sums.update({"model.onnx": sha256_file(model), "manifest.json": sha256_file(rel / "manifest.json")})
    (rel / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())))


def test_swapped_model_with_recomputed_checksums_fails_the_signature(keys, tiny_pkg, tmp_path):
    (priv, pub), _ = keys
    rel = _release(tmp_path, tiny_pkg, priv)
    _swap_model(rel.dir)
    assert package.check_files(rel.dir)  # checksums alone are fooled...
    with pytest.raises(PackageError, match="signature check failed"):
        package.verify(rel.dir, smoke=False, public_key=pub)  # ...the signature is not


def _runner(rel: Path, pub: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH: only the release's own runner can be imported
    return subprocess.run([sys.executable, "-m", "cahp_edge_runtime", "profile", ".", "--json", "--runs", "1",
                           "--warmup", "0", "--no-operators", "--public-key", str(pub)], cwd=rel,
                          capture_output=True, text=True, env=env, timeout=300)


def test_the_release_runner_checks_the_signature_on_the_device(keys, tiny_pkg, tmp_path):
    (priv, pub), (_, other_pub) = keys
    rel = _release(tmp_path, tiny_pkg, priv)
    ok = _runner(rel.dir, pub)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    for key, why in ((other_pub, "not signed by that key"), (pub, "signature check failed")):
        if key is pub:
            _swap_model(rel.dir)
        bad = _runner(rel.dir, key)
        assert bad.returncode == 1 and "error:" in bad.stderr and "not signed by that key" in bad.stderr, why
        assert json.loads(bad.stdout)["ok"] is False


@pytest.mark.slow
def test_build_sign_key_end_to_end(keys, pair_release, tmp_path):
    from cahp_edge.build.options import make_options
    from cahp_edge.build.pipeline import build

    (priv, pub), _ = keys
    root, _ = pair_release
    base = {"model": str(root / "ck"), "data": str(root / "data" / "train.tsv"),
            "eval": str(root / "data" / "dev.tsv"), "targets": ["host"], "out": str(tmp_path / "dist")}
    build(make_options({**base, "sign_key": str(priv)}, root / "build.toml"))
    rel = tmp_path / "dist" / "host"
    package.verify(tmp_path / "dist" / "host.tar.gz", smoke=False, public_key=pub)
    assert "sign_key" not in json.loads((rel / "manifest.json").read_text())["options"]  # not even its path
    res = build(make_options(base, root / "build.toml"))  # unsigned now: a new release, not the cached one
    assert not res.stages["package:host"].hit and not (rel / SIGNATURE).exists()
