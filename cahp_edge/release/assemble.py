"""Assemble one target's release from finished stages: files, metrics.json, manifest lineage, report.

Called by :mod:`cahp_edge.build.pipeline` as the last per-target stage. The release is skipped (reported
as cached) when ``dist/<target>/`` already holds a verified release of exactly these stage outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cahp_edge.errors import PackageError
from cahp_edge.lineage import StageRecord, canonical, code_version
from cahp_edge.plan import PLAN_FILE
from cahp_edge.release.portable import portable, portable_json

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spm.model",
)
# Hugging Face JSON files that may hold the build machine's paths (e.g. config.json's _name_or_path)
HF_JSON = ("config.json", "tokenizer_config.json", "special_tokens_map.json")
VERSIONED = (
    "cahp-edge",
    "torch",
    "transformers",
    "tokenizers",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "numpy",
    "scikit-learn",
    "scipy",
    "accelerate",
    "optimum-onnx",
)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out


def build_host() -> dict[str, Any]:
    from cahp_edge.targets.profile import read_cpuinfo

    model, flags = read_cpuinfo()
    from cahp_edge.targets.profile import host_features

    return {
        "cpu": model,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "isa_features": host_features(flags),
    }


# ---- metrics --------------------------------------------------------------------------------------
def model_metrics(r: dict) -> dict[str, Any]:
    """The numbers metrics.json and the report show, from one validate report (runner JSON inside)."""
    prof = r.get("profile") or {}
    lat, mem, model = prof.get("latency") or {}, prof.get("memory") or {}, prof.get("model") or {}
    acc = r.get("accuracy")
    if acc is None:
        acc = (prof.get("accuracy") or {}).get("accuracy")
    return {
        "accuracy": acc,
        "eval_examples": (prof.get("accuracy") or {}).get("n"),
        "eval_batching": (prof.get("accuracy") or {}).get("batching"),  # int8 logits depend on it
        "latency_ms": {k: lat.get(f"{k}_ms") for k in ("p50", "p90", "p99", "cold_start")} if lat else None,
        "throughput_per_s": lat.get("throughput_per_s"),
        "size_mb": model.get("size_mb"),
        "peak_memory_mb": mem.get("peak_rss_mb"),
        "threads": (prof.get("runtime") or {}).get("threads"),
        "benchmark": {k: lat.get(k) for k in ("batch", "seq_len", "runs")} if lat else None,
    }


def budget_verdict(validated: dict) -> dict[str, Any]:
    """validate's budget checks on the shipped model: pass / fail / skip each, with its reason."""
    shipped = validated.get("shipped") or {}
    checks = [
        {
            "budget": c["name"],
            "value": c.get("measured"),
            "limit": c.get("limit"),
            "status": c.get("status"),
            "reason": c.get("reason", ""),
        }
        for c in shipped.get("checks", [])
    ]
    failed = [c["budget"] for c in checks if c["status"] == "fail"]
    skipped = [c["budget"] for c in checks if c["status"] == "skip"]
    status = "fail" if failed else ("incomplete" if skipped else "pass")
    return {
        "status": status,
        "pass": not failed,
        "failed": failed,
        "skipped": skipped,
        "checks": checks,
        "notes": shipped.get("notes", []),
    }


# ---- assembling -----------------------------------------------------------------------------------
def _model_files(q: StageRecord, target) -> dict[str, Path]:
    files = {}
    for fmt in target.formats:
        hits = sorted(q.path.rglob(f"*.{fmt}"))
        if not hits:
            raise PackageError(
                f"quantize output for {target.name} has no .{fmt} model",
                f"looked in {q.path}",
                "re-run the build with --force",
            )
        files[f"model.{fmt}"] = hits[0]
    ops = sorted(q.path.rglob("required_operators.config"))
    if "ort" in target.formats and ops:  # for a reduced ONNX Runtime build on the device
        files["required_operators.config"] = ops[0]
    return files


def _side_files(export_dir: Path) -> dict[str, Path]:
    from cahp_edge.tasks import ST_FILES

    files = {}
    for name in (*TOKENIZER_FILES, "config.json"):
        hits = sorted(export_dir.rglob(name), key=lambda p: (len(p.parts), p))  # the top-level file first
        if hits:
            files[name] = hits[0]
    for name in ST_FILES:  # embedding models: sentence-transformers' ONNX backend loads the release
        if (export_dir / name).is_file():
            files[name] = export_dir / name
    if "config.json" not in files or "tokenizer.json" not in files:
        raise PackageError(
            "exported model has no config.json or tokenizer.json",
            f"looked in {export_dir}",
            "re-run the build with --force",
        )
    return files


@dataclass(frozen=True)
class ReleaseInputs:
    """The finished stages one target's release is made from (typed: no lookups by stage name)."""

    plan: StageRecord  # prune: plan.json (+ plots)
    shaped: StageRecord  # reshape: cahp_heads.json
    export: StageRecord  # plain ONNX export at the target's opset: config.json + tokenizer files
    data: StageRecord  # eval.jsonl (shipped) + splits.json
    quantized: StageRecord  # the target's model file(s)
    validated: StageRecord  # validate.json
    lineage: dict[str, StageRecord]  # every stage the release descends from, in build order
    source: dict[str, Any]  # model, name, checkpoint_sha256, tokenizer_sha256
    data_files: dict[str, Any]  # train / eval paths and their sha256
    options: dict[str, Any]  # the build options, as recorded in the manifest
    pytorch: StageRecord | None = None  # recover (or reshape) output, shipped as pytorch/ with --keep-pytorch


def _signer(key: Path | None) -> str | None:
    """Who signs: the public key beside the private one, else a hash of the key file (never the key)."""
    if key is None:
        return None
    pub = Path(str(key) + ".pub")
    try:
        return pub.read_text(encoding="utf-8").split()[1] if pub.is_file() else hashlib.sha256(
            Path(key).read_bytes()).hexdigest()
    except (OSError, IndexError, UnicodeDecodeError):
        return str(key)


def release_key(lineage: dict[str, StageRecord], pytorch: bool = False, signer: str | None = None) -> str:
    """Same stage outputs + same code + same contents = same release (a finished one is then kept)."""
    keys = {n: r.tree for n, r in lineage.items()}
    doc = {"code": code_version(), "stages": keys, **({"pytorch": True} if pytorch else {}),
           **({"signer": signer} if signer else {})}
    return hashlib.sha256(canonical(doc).encode()).hexdigest()[:16]


def _pytorch_files(rec: StageRecord | None) -> dict[str, Path]:
    """The pruned PyTorch model folder (safetensors, cahp_heads.json, config, tokenizer) under pytorch/."""
    if rec is None:
        return {}
    files = sorted(p for p in rec.path.rglob("*") if p.is_file())
    return {f"pytorch/{p.relative_to(rec.path).as_posix()}": p for p in files}


def make_release(out: Path, target, inputs: ReleaseInputs, force: bool, scratch: Path | None = None,
                 sign_key: Path | None = None) -> tuple[Any, dict, StageRecord]:
    import time

    from cahp_edge.release import package, report, runner

    t0 = time.perf_counter()
    rkey = release_key(inputs.lineage, inputs.pytorch is not None, _signer(sign_key))
    dist_dir, tarball = Path(out) / target.name, Path(out) / f"{target.name}.tar.gz"
    validated = json.loads((inputs.validated.path / "validate.json").read_text(encoding="utf-8"))
    metrics = {name: model_metrics(r) for name, r in validated.items()}
    verdict = budget_verdict(validated)
    if not force and _same_release(dist_dir, rkey):
        # the folder is this release, checked file by file; the archive must hold exactly it, or it is
        # rewritten from the folder (reproducible: the same bytes an uninterrupted build wrote)
        if not (tarball.is_file() and package.tarball_matches(dist_dir, tarball, target.name)):
            package.check_replaceable(Path(out), target.name)
            package.write_tarball(dist_dir, target.name, scratch)
        rel = package.Release(target.name, dist_dir, tarball, package.read_sums(dist_dir))
        summary = {
            "dir": str(dist_dir),
            "tarball": str(tarball),
            "files": len(rel.files),
            "budgets": _word(verdict),
        }
        return rel, verdict, StageRecord("package", rkey, dist_dir, "", summary, 0.0, True)

    # every document below goes through portable(): file names instead of this machine's paths,
    # floats to 6 significant digits (one place for both)
    plan = portable(json.loads((inputs.plan.path / PLAN_FILE).read_text(encoding="utf-8")))
    splits = portable(json.loads((inputs.data.path / "splits.json").read_text(encoding="utf-8")))
    metrics_doc = portable({
        "target": target.name,
        "splits": splits["sources"],
        "models": metrics,
        "budgets": verdict,
        "raw": validated,
    })
    lineage = {n: r.lineage() for n, r in inputs.lineage.items()}
    manifest = portable({
        "cahp_edge": code_version(),
        "release_key": rkey,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": dict(inputs.source),
        "data": {**inputs.data_files, "splits": splits["sources"]},
        "options": dict(inputs.options),
        "target_profile": target.summary(),
        "stages": lineage,
        "versions": versions(),
        "build_host": build_host(),
    })
    side = _side_files(inputs.export.path)
    ctx = report.ReportContext(
        **report.running_inputs(inputs.data.path / "eval.jsonl", side["config.json"], target),
        target=target,
        plan=plan,
        metrics=metrics_doc["models"],
        verdict=metrics_doc["budgets"],
        splits=splits["sources"],
        manifest=manifest,
        stages=manifest["stages"],
    )
    files: dict[str, Any] = {
        **_model_files(inputs.quantized, target),
        **side,
        **runner.device_files(),
        **_pytorch_files(inputs.pytorch),
        "cahp_heads.json": portable_json(inputs.shaped.path / "cahp_heads.json"),
        "eval.jsonl": inputs.data.path / "eval.jsonl",
        "target.json": json.dumps(portable(target.summary()), indent=2) + "\n",
        "metrics.json": json.dumps(metrics_doc, indent=2, default=str) + "\n",
        "MODEL_CARD.md": report.model_card(ctx),
        "report.html": report.report_html(ctx),
    }
    files.update({name: portable_json(src, round_floats=False) for name, src in files.items()
                  if name.endswith(HF_JSON) and isinstance(src, Path)})  # config.json's _name_or_path
    files.update({name: portable_json(src) for name, src in files.items()
                  if name == "pytorch/cahp_heads.json" and isinstance(src, Path)})
    rel = package.write_release(Path(out), target.name, files, manifest, scratch=scratch, sign_key=sign_key)
    summary = {
        "dir": str(rel.dir),
        "tarball": str(rel.tarball),
        "files": len(rel.files),
        "budgets": _word(verdict),
    }
    return rel, verdict, StageRecord("package", rkey, rel.dir, "", summary, time.perf_counter() - t0, False)


def _word(verdict: dict) -> str:
    if verdict["status"] == "fail":
        return "FAIL (" + ", ".join(verdict["failed"]) + ")"
    if verdict["status"] == "incomplete":
        # the word the summary and metrics.json use too: not a pass while a budget went unmeasured
        return "incomplete (not measured: " + ", ".join(verdict["skipped"]) + ")"
    return "pass"


def _same_release(d: Path, rkey: str) -> bool:
    from cahp_edge.release import package

    try:
        if json.loads((d / package.MANIFEST).read_text(encoding="utf-8")).get("release_key") != rkey:
            return False
        package.check_files(d)
        return True
    except (OSError, ValueError, PackageError):
        return False
