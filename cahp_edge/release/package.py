"""Release packages: layout, manifest, SHA256SUMS, tarball, verification and safe extraction.

    cahp-edge verify dist/rpi5-arm64            # or dist/rpi5-arm64.tar.gz

A release is one folder per target plus a ``.tar.gz`` of it. Both are written beside their final
name and renamed into place, so a release is complete or absent, and a failed build leaves the
previous release as it was. The tarball is reproducible (sorted members, fixed mtime, uid 0), so
identical inputs give an identical archive.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cahp_edge.errors import PackageError
from cahp_edge.fsutil import _disk_error, atomic_dir, sha256_file

SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"  # optional OpenSSH signature of SHA256SUMS (cahp_edge.release.signing)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "cahp-release/1"
MAX_EXTRACT_BYTES = 8 << 30  # refuse archives that would unpack past 8 GiB (decompression bombs)
MAX_MEMBERS = 10_000  # a release has a few dozen files; more is an attack on the unpacker
MAX_DOC_BYTES = 8 << 20  # SHA256SUMS / manifest.json read into memory: never more than this
# verify's smoke run scores every bundled eval row; it must match metrics.json's shipped accuracy within
# this (accuracy fraction): other CPUs' kernels move int8 logits a little, a swapped model much more
SMOKE_ACCURACY_TOLERANCE = 0.01
_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
# keys whose values must never reach a manifest (tokens, passwords, key files)
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|identity|private[_-]?key|ssh[_-]?key|auth)",
                         re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]*@", re.IGNORECASE)


@dataclass
class Release:
    target: str
    dir: Path
    tarball: Path
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "dir": str(self.dir), "tarball": str(self.tarball),
                "files": len(self.files)}


# ---- writing ------------------------------------------------------------------------------------
def scrub(obj: Any) -> Any:
    """Copy of ``obj`` with secret-looking keys dropped and URL passwords removed."""
    if isinstance(obj, Mapping):
        return {str(k): scrub(v) for k, v in obj.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(obj, list | tuple):
        return [scrub(v) for v in obj]
    if isinstance(obj, str):
        return _URL_USERINFO.sub(r"\g<scheme>\g<user>@", obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _check_relpath(rel: str) -> str:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or rel in (SUMS, MANIFEST) or "\\" in rel:
        raise PackageError(f"release file name {rel!r} is not allowed",
                           f"names are relative, no '..'; {SUMS} and {MANIFEST} come from the packager",
                           "report this as a bug")
    return p.as_posix()


def write_release(dist: Path, target: str, files: Mapping[str, Path | bytes | str],
                  manifest: Mapping[str, Any], scratch: Path | None = None,
                  sign_key: Path | None = None) -> Release:
    """Write ``dist/<target>/`` and ``dist/<target>.tar.gz`` atomically; replace an older release.

    ``files`` maps a relative path in the release to a source file, bytes or text. The manifest is
    scrubbed of secrets and gets a ``files`` table (sha256 + bytes of every other file).
    """
    dist = Path(dist)
    final_dir, final_tar = dist / target, dist / f"{target}.tar.gz"
    if final_dir.parent != dist or final_tar.parent != dist:
        raise PackageError(f"release name {target!r} does not name a folder directly inside {dist}", "",
                           "use a target name made of letters, digits, '.', '_' and '-'")
    check_replaceable(dist, target)
    tar_tmp: Path | None = None
    sums: dict[str, str] = {}
    try:
        with atomic_dir(final_dir, overwrite=True, mark=False, scratch=scratch) as tmp:
            table = {}
            for rel in sorted(files):
                name = _check_relpath(rel)
                dst = tmp / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                _write_one(files[rel], dst)
                sums[name] = sha256_file(dst)
                table[name] = {"sha256": sums[name], "bytes": dst.stat().st_size}
            doc = {"format": MANIFEST_FORMAT, **scrub(dict(manifest)), "target": target, "files": table}
            (tmp / MANIFEST).write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n",
                                        encoding="utf-8")
            sums[MANIFEST] = sha256_file(tmp / MANIFEST)
            (tmp / SUMS).write_text("".join(f"{h}  {n}\n" for n, h in sorted(sums.items())), encoding="utf-8")
            if sign_key is not None:  # SHA256SUMS.sig: covers SHA256SUMS, which covers every file
                from cahp_edge.release.signing import sign

                sign(tmp / SUMS, sign_key)
            tar_tmp = _write_tarball(tmp, target, Path(scratch) if scratch is not None else dist)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: give a release the usual mode
    except OSError as e:
        if tar_tmp is not None:
            with contextlib.suppress(OSError):
                tar_tmp.unlink()
        raise _disk_error(final_tar, e) from e
    except BaseException:
        if tar_tmp is not None:
            with contextlib.suppress(OSError):
                tar_tmp.unlink()
        raise
    _publish_archive(tar_tmp, final_tar)  # the folder is in place; now the archive (its own rename)
    return Release(target, final_dir, final_tar, sums)


def _publish_archive(tmp: Path, final: Path) -> None:
    """Rename a finished archive into place with the usual file mode (mkstemp makes 0600); on any
    failure the temporary is removed."""
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _disk_error(final, e) from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_tarball(folder: Path, target: str, scratch: Path | None = None) -> Path:
    """(Re)write ``<dist>/<target>.tar.gz`` from a finished release folder, atomically."""
    folder = Path(folder)
    final = folder.parent / f"{target}.tar.gz"
    try:
        tmp = _write_tarball(folder, target, Path(scratch) if scratch is not None else folder.parent)
    except OSError as e:  # _write_tarball removes its own temporary on failure
        raise _disk_error(final, e) from e
    _publish_archive(tmp, final)
    return final


def check_replaceable(dist: Path, target: str) -> None:
    """Refuse to replace ``dist/<target>/`` or ``dist/<target>.tar.gz`` unless each is a cahp-edge
    release of that target holding nothing else: a user's folder or archive there is never touched."""
    d, tar = Path(dist) / target, Path(dist) / f"{target}.tar.gz"
    fix = "move it away or choose another --out"
    if d.is_symlink() or (d.exists() and not d.is_dir()):
        raise PackageError(f"{d} exists and is not a release folder", "a build would replace it", fix)
    if d.is_dir() and any(d.iterdir()):
        try:
            listed = set(read_sums(d)) | {SIGNATURE}
            fmt = json.loads((d / MANIFEST).read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, PackageError, AttributeError):
            listed, fmt = set(), None
        if fmt != MANIFEST_FORMAT:
            raise PackageError(f"{d} exists and is not a cahp-edge release", "a build would replace it", fix)
        extra = sorted(p.relative_to(d).as_posix() for p in d.rglob("*")
                       if (p.is_file() or p.is_symlink()) and not _bytecode(p.relative_to(d))
                       and p.relative_to(d).as_posix() not in listed | {SUMS})
        if extra:
            raise PackageError(f"release folder {d} holds files the release does not list",
                               f"{', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''}: a build would "
                               "delete them",
                               "move those files out of the release folder")
    if tar.is_symlink() or (tar.exists() and not tar.is_file()):
        raise PackageError(f"{tar} exists and is not a release archive", "a build would replace it", fix)
    if tar.is_file() and not _tar_is_release(tar, target):
        raise PackageError(f"{tar} exists and is not a cahp-edge release of {target}",
                           "a build would replace it", fix)


def tarball_matches(folder: Path, tar: Path, target: str) -> bool:
    """The archive holds exactly the folder's release: the same SHA256SUMS, every listed file with that
    hash, nothing else (streamed and hashed, nothing written). The two are one unit: a re-run that finds
    a folder and an archive from different builds rebuilds instead of calling them cached."""
    try:
        want = read_sums(folder)
        want_sums = (Path(folder) / SUMS).read_bytes()
        seen: dict[str, str] = {}
        with tarfile.open(tar, "r:gz") as tf:
            for m in tf:
                if m.isdir() and (m.name == target or m.name.startswith(f"{target}/")):
                    continue
                rel = m.name[len(target) + 1:] if m.name.startswith(f"{target}/") else None
                if rel is None or not m.isreg():
                    return False
                f = tf.extractfile(m)
                data_hash = hashlib.sha256()
                while f is not None and (block := f.read(1 << 20)):
                    data_hash.update(block)
                seen[rel] = data_hash.hexdigest()
        sig = Path(folder) / SIGNATURE
        want_sig = hashlib.sha256(sig.read_bytes()).hexdigest() if sig.is_file() else None
        return (seen.pop(SUMS, None) == hashlib.sha256(want_sums).hexdigest()
                and seen.pop(SIGNATURE, None) == want_sig and seen == want)
    except (tarfile.TarError, OSError, EOFError, PackageError, ValueError):
        return False


def _tar_is_release(path: Path, target: str) -> bool:
    """Every member under ``target/`` and a cahp-release manifest among them (streamed, nothing written).
    A damaged copy (cut short after members of ``target/``) counts as ours too: a re-run replaces it."""
    seen = 0
    try:
        with tarfile.open(path, "r:gz") as tf:
            fmt = None
            for m in tf:
                if m.name != target and not m.name.startswith(f"{target}/"):
                    return False
                seen += 1
                if m.name == f"{target}/{MANIFEST}" and m.isreg() and m.size < (8 << 20):
                    f = tf.extractfile(m)
                    fmt = json.loads(f.read().decode("utf-8")).get("format") if f else None
            return fmt == MANIFEST_FORMAT
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return seen > 0
    except (ValueError, AttributeError):
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_one(src: Path | bytes | str, dst: Path) -> None:
    if isinstance(src, bytes):
        dst.write_bytes(src)
    elif isinstance(src, str):
        dst.write_text(src, encoding="utf-8")
    else:
        src = Path(src)
        if not src.is_file():
            raise PackageError(f"cannot package {dst.name}", f"its source {src} is missing",
                               "re-run the build with --force")
        shutil.copyfile(src, dst)


def _write_tarball(src_dir: Path, arc_root: str, dist: Path) -> Path:
    """Reproducible tar.gz of src_dir under ``arc_root/`` written to a temp file in dist."""
    fd, name = tempfile.mkstemp(prefix=f".{arc_root}.", suffix=".tar.gz.partial", dir=dist)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            tf.addfile(_tarinfo(arc_root, dir_=True))
            for p in sorted(src_dir.rglob("*")):
                if "__pycache__" in p.relative_to(src_dir).parts:
                    continue  # bytecode from running the runner in place is not part of a release
                rel = p.relative_to(src_dir).as_posix()
                if p.is_dir():
                    tf.addfile(_tarinfo(f"{arc_root}/{rel}", dir_=True))
                else:
                    info = _tarinfo(f"{arc_root}/{rel}", size=p.stat().st_size)
                    with open(p, "rb") as f:
                        tf.addfile(info, f)
            raw.flush()
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return path


def _tarinfo(name: str, size: int = 0, dir_: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE if dir_ else tarfile.REGTYPE
    ti.mode = 0o755 if dir_ else 0o644
    ti.size = 0 if dir_ else size
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


# ---- safe extraction ----------------------------------------------------------------------------
def _member_problem(m: tarfile.TarInfo) -> str | None:
    name = m.name
    p = PurePosixPath(name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or p.is_absolute():
        return "absolute path"
    if ".." in p.parts or ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' component"
    if m.issym() or m.islnk():
        return f"{'symbolic' if m.issym() else 'hard'} link to {m.linkname!r}"
    if m.ischr() or m.isblk():
        return "device file"
    if m.isfifo():
        return "FIFO"
    if not (m.isreg() or m.isdir()):
        return f"unsupported member type {m.type!r}"
    return None


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise PackageError(f"{archive} is not a readable tar archive", str(e),
                           "re-copy the .tar.gz or point verify at the release folder") from e


def _corrupt(archive: Path, e: Exception) -> PackageError:
    return PackageError(f"archive {archive} is truncated or corrupt", str(e), "re-copy the .tar.gz")


def _refuse(archive: Path, why: str) -> PackageError:
    return PackageError(f"refusing to extract {archive.name}", why,
                        "only unpack archives written by cahp-edge; rebuild the package")


def check_members(archive: Path, members: list[tarfile.TarInfo], max_bytes: int) -> None:
    """Refuse the whole archive when any member is unsafe (all of them named, up to five)."""
    bad, seen, total = [], set(), 0
    if len(members) > MAX_MEMBERS:
        raise _refuse(archive, f"it holds {len(members)} members (limit {MAX_MEMBERS})")
    for m in members:
        why = _member_problem(m)
        key = PurePosixPath(m.name).as_posix().rstrip("/")
        if why is None and key in seen and not m.isdir():
            why = "duplicate member"
        seen.add(key)
        if why:
            bad.append(f"{m.name!r} ({why})")
        total += m.size if m.isreg() else 0
    if bad:
        more = " ..." if len(bad) > 5 else ""
        raise _refuse(archive, f"{len(bad)} unsafe member(s): {', '.join(bad[:5])}{more}")
    if total > max_bytes:
        gib = 2**30
        raise _refuse(archive, f"it would unpack to {total / gib:.1f} GiB (limit {max_bytes / gib:.0f} GiB)")


def safe_extract(archive: Path, dest: Path, max_bytes: int = MAX_EXTRACT_BYTES) -> None:
    """Extract a tar(.gz) into ``dest``; refuse the whole archive if any member is unsafe."""
    import zlib

    archive, dest = Path(archive), Path(dest)
    with _open_tar(archive) as tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise _corrupt(archive, e) from e
        check_members(archive, members, max_bytes)
        root = dest.resolve()
        try:
            for m in members:
                target = (dest / m.name).resolve()
                if root != target and root not in target.parents:  # belt and braces after the name checks
                    raise _refuse(archive, f"{m.name!r} escapes the destination")
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(m)
                assert src is not None  # regular file, checked above
                with src, open(target, "xb") as out:  # "x": never follow or overwrite anything
                    shutil.copyfileobj(src, out)
                os.chmod(target, 0o644)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise _corrupt(archive, e) from e
        except FileExistsError as e:
            raise _refuse(archive, f"{e.filename} would be written twice") from e


# ---- verification -------------------------------------------------------------------------------
@dataclass
class VerifyResult:
    package: str
    files_checked: int
    target: str | None
    smoke: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"package": self.package, "ok": True, "files_checked": self.files_checked,
                "target": self.target, "smoke": self.smoke}


def read_sums(pkg: Path) -> dict[str, str]:
    f = pkg / SUMS
    if not f.is_file():
        raise PackageError(f"{pkg} has no {SUMS}", "every cahp-edge release lists its files' checksums",
                           "point verify at a release folder or .tar.gz written by `cahp-edge build`")
    sums: dict[str, str] = {}
    try:
        lines = f.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PackageError(f"{f} is unreadable", str(e), "rebuild the package") from e
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = _SUM_LINE.match(line)
        rel = m.group(2) if m else ""
        if not m or PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            raise PackageError(f"{SUMS} line {i} is malformed or names an unsafe path", f"{line[:80]!r}",
                               "rebuild the package")
        sums[rel] = m.group(1)
    return sums


def check_files(pkg: Path) -> int:
    """Compare every file with SHA256SUMS; report missing, changed and extra files in one error."""
    pkg = Path(pkg)
    sums = read_sums(pkg)
    missing, changed, extra, links = [], [], [], []
    for rel, want in sorted(sums.items()):
        p = pkg / rel
        if p.is_symlink():
            links.append(rel)
        elif not p.is_file():
            missing.append(rel)
        elif sha256_file(p) != want:
            changed.append(rel)
    for p in sorted(pkg.rglob("*")):
        rel = p.relative_to(pkg).as_posix()
        if _bytecode(p.relative_to(pkg)):
            continue  # Python writes these when the release's runner or run.py runs in place
        if p.is_symlink() and rel not in sums:
            links.append(rel)
        elif p.is_file() and rel not in (SUMS, SIGNATURE) and rel not in sums:
            extra.append(rel)
    problems = _listed(missing=missing, changed=changed, extra=extra, symlinked=links)
    if not problems and MANIFEST in sums:
        problems += _manifest_problems(pkg, sums)
    _fail_verification(pkg, problems)
    return len(sums)


def _listed(**groups: list[str]) -> list[str]:
    """'2 changed (a, b)' per non-empty group: how verification names what it found."""
    return [f"{len(v)} {k} ({', '.join(v[:4])}{' ...' if len(v) > 4 else ''})"
            for k, v in groups.items() if v]


def _fail_verification(pkg: Path, problems: list[str]) -> None:
    if problems:
        raise PackageError(f"package {pkg} failed verification", "; ".join(problems),
                           "re-copy the release or rebuild it with `cahp-edge build`")


def _bytecode(rel: PurePosixPath | Path) -> bool:
    return "__pycache__" in rel.parts[:-1] and rel.suffix == ".pyc"


def _manifest_problems(pkg: Path, sums: dict[str, str]) -> list[str]:
    try:
        table = json.loads((pkg / MANIFEST).read_text(encoding="utf-8")).get("files", {})
        listed = {k: v["sha256"] for k, v in table.items()}
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        return [f"{MANIFEST} unreadable ({e})"]
    others = {k: v for k, v in sums.items() if k != MANIFEST}
    if listed != others:
        diff = sorted(set(listed.items()) ^ set(others.items()))
        return [f"{MANIFEST} and {SUMS} disagree on {len(diff)} entr{'y' if len(diff) == 1 else 'ies'} "
                f"({', '.join(sorted({k for k, _ in diff})[:4])})"]
    return []


@contextlib.contextmanager
def opened_package(path: Path) -> Iterator[Path]:
    """Yield a release folder: ``path`` itself, or a safely extracted copy of a tarball."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise PackageError(f"package not found: {path}", "", "pass a release folder or its .tar.gz")
    with tempfile.TemporaryDirectory(prefix="cahp-verify-") as tmp:
        safe_extract(path, Path(tmp))
        roots = [p for p in Path(tmp).iterdir()]
        if (Path(tmp) / SUMS).is_file():
            yield Path(tmp)
        elif len(roots) == 1 and roots[0].is_dir():
            yield roots[0]
        else:
            raise PackageError(f"{path.name} does not hold one release folder",
                               f"found {len(roots)} top-level entries",
                               "pass a .tar.gz written by `cahp-edge build`")


def verify(path: Path, smoke: bool = True, timeout_s: float = 300.0,
           public_key: Path | None = None) -> VerifyResult:
    """Checksums of every file (and the signature when a public key is given), then optionally one
    inference with the device-side runner."""
    path = Path(path)
    if path.is_file():
        # checksums first, streamed straight from the archive: a bomb or a changed file is refused
        # before a single byte is written to disk
        n, target = check_archive(path)
        if not smoke and public_key is None:
            return VerifyResult(str(path), n, target)
    with opened_package(path) as pkg:
        n = check_files(pkg)
        if public_key is not None:
            from cahp_edge.release.signing import check_signature

            check_signature(pkg, public_key)
        target = None
        with contextlib.suppress(OSError, ValueError, AttributeError):
            target = json.loads((pkg / MANIFEST).read_text(encoding="utf-8")).get("target")
        result = VerifyResult(str(path), n, target)
        if smoke:
            result.smoke = smoke_run(pkg, timeout_s=timeout_s)
    return result


def check_archive(archive: Path) -> tuple[int, str | None]:
    """Every member of a release archive hashed while streaming (nothing written) and compared with its
    SHA256SUMS: unsafe, missing, changed or extra members are refused like check_files does.
    Returns (files checked, the manifest's target)."""
    import zlib

    archive = Path(archive)
    seen: dict[str, str] = {}
    sums_bytes = None
    target = None
    names: set[str] = set()
    roots: set[str] = set()
    count = total = 0
    try:
        with _open_tar(archive) as tf:
            for m in tf:
                count += 1
                if count > MAX_MEMBERS:
                    raise _refuse(archive, f"it holds more than {MAX_MEMBERS} members")
                check_members(archive, [m], MAX_EXTRACT_BYTES)
                key = PurePosixPath(m.name).as_posix().rstrip("/")
                if key in names and not m.isdir():
                    raise _refuse(archive, f"1 unsafe member(s): {m.name!r} (duplicate member)")
                names.add(key)
                roots.add(key.split("/", 1)[0])
                if len(roots) > 1:
                    raise PackageError(f"{archive.name} does not hold one release folder",
                                       f"found top-level entries {sorted(roots)[:4]}",
                                       "pass a .tar.gz written by `cahp-edge build`")
                total += m.size if m.isreg() else 0
                if total > MAX_EXTRACT_BYTES:
                    raise _refuse(archive, f"it would unpack to more than {MAX_EXTRACT_BYTES >> 30} GiB")
                if not m.isreg():
                    continue
                rel = m.name.split("/", 1)[1] if "/" in m.name else m.name
                f = tf.extractfile(m)
                h = hashlib.sha256()
                keep = rel in (SUMS, MANIFEST) and m.size <= MAX_DOC_BYTES
                buf = bytearray()
                while f is not None and (block := f.read(1 << 20)):
                    h.update(block)
                    if keep:
                        buf += block
                seen[rel] = h.hexdigest()
                if keep and rel == SUMS:
                    sums_bytes = bytes(buf)
                elif keep:
                    with contextlib.suppress(ValueError, AttributeError):
                        target = json.loads(bytes(buf).decode("utf-8")).get("target")
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise _corrupt(archive, e) from e
    if sums_bytes is None:
        raise PackageError(f"{archive} has no {SUMS}", "every cahp-edge release lists its files' checksums",
                           "point verify at a release written by `cahp-edge build`")
    with tempfile.TemporaryDirectory(prefix="cahp-sums-") as d:
        (Path(d) / SUMS).write_bytes(sums_bytes)
        want = read_sums(Path(d))
    seen.pop(SUMS, None)
    seen.pop(SIGNATURE, None)
    missing = sorted(set(want) - set(seen))
    changed = sorted(k for k in set(want) & set(seen) if want[k] != seen[k])
    extra = sorted(k for k in set(seen) - set(want) if not _bytecode(PurePosixPath(k)))
    _fail_verification(archive, _listed(missing=missing, changed=changed, extra=extra))
    return len(want), target


def smoke_run(pkg: Path, timeout_s: float = 300.0) -> dict[str, Any]:
    """One inference through the device-side runner in a fresh interpreter (its own imports only)."""
    import subprocess
    import sys

    # a few warm runs and every bundled eval row: proves the model, tokenizer and labels load and agree
    # on this machine, and that the model is the one metrics.json measured (see _check_smoke_accuracy)
    cmd = [sys.executable, "-m", "cahp_edge.runtime", "profile", str(pkg), "--json", "--warmup", "1",
           "--runs", "3", "--no-operators"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise PackageError(f"smoke inference on {pkg} timed out after {timeout_s:.0f} s", "",
                           "run `python -m cahp_edge.runtime profile PKG` by hand to see where") from e
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PackageError(f"smoke inference on {pkg} failed", last[:300],
                           "check that the package's model and tokenizer belong together; rebuild it")
    try:
        r = json.loads(proc.stdout)
        from cahp_edge.targets.validate import score_entities

        score_entities(r, pkg)  # taggers: entity F1 from the runner's tags (seqeval, here on the host)
        lat, acc = r.get("latency") or {}, r.get("accuracy") or {}
        out = {"ok": bool(r.get("ok")), "runner": r.get("schema"), "p50_ms": lat.get("p50_ms"),
               "accuracy": acc.get("accuracy"), "n": acc.get("n"), "metric": acc.get("metric", "accuracy"),
               "checksums_verified": (r.get("model") or {}).get("checksums_verified")}
    except (json.JSONDecodeError, AttributeError) as e:
        raise PackageError("the device-side runner printed no JSON", proc.stdout[:200],
                           "report this as a bug") from e
    out["expected_accuracy"] = _check_smoke_accuracy(pkg, out["accuracy"])
    return out


def _check_smoke_accuracy(pkg: Path, got: float | None) -> float | None:
    """Refuse a release whose model scores the bundled eval rows unlike metrics.json says it did."""
    try:
        want = json.loads((pkg / "metrics.json").read_text(encoding="utf-8"))["models"]["shipped"]["accuracy"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a bare export folder: nothing recorded to compare with
    if got is not None and want is not None and abs(got - want) > SMOKE_ACCURACY_TOLERANCE:
        raise PackageError(f"{pkg}: the model scores {got:.4f} on the bundled eval rows, metrics.json says "
                           f"{want:.4f}", f"more than {SMOKE_ACCURACY_TOLERANCE:.2f} apart: the model is not "
                           "the one that was measured", "get the release again from its builder")
    return want
