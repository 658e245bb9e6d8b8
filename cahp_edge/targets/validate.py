"""`cahp-edge validate PACKAGE_OR_MODEL --target NAME [--data EVAL] [--device local|ssh://..|adb://..]`.

Measures a packaged or exported model with the target's session options (threads, execution
providers, benchmark shape) and checks the target's budgets: accuracy drop, p90 latency, file size,
peak memory. The measuring is done by the device-side runner (`python -m cahp_edge.runtime profile`)
in a fresh process, locally or on the device, so memory numbers are the runner's and not this CLI's,
and local and remote results come from the same code. For an ARM64 target measured on an x86 host,
``emulate=True`` adds the accuracy of the aarch64 kernels under QEMU (cahp_edge.targets.emulate).

Freshness: every run stages a new folder, passes a nonce that the runner echoes, and checks the
model hash the runner reports; a result that does not match is rejected, never reported.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cahp_edge.errors import DataError, DeviceError, ModelError, PackageError, UsageError, ValidateError
from cahp_edge.runtime.package import EVAL_NAMES, MODEL_NAMES, sha256_file
from cahp_edge.targets.profile import ARCH_ALIASES, Target, load_target

_RUNNER_ERRORS = {"package": PackageError, "data": DataError, "model": ModelError, "usage": UsageError,
                  "runtime": DeviceError}
PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class Check:
    name: str  # accuracy_drop | p90_latency_ms | size_mb | peak_memory_mb
    status: str  # pass | fail | skip
    measured: float | None
    limit: float
    reason: str


@dataclass
class Report:
    target: str
    device: str
    model: str
    passed: bool  # every budget that could be checked held, and none was skipped for lack of data
    checks: list[Check]
    accuracy: float | None
    baseline_accuracy: float | None
    accuracy_drop: float | None
    profile: dict[str, Any]  # the runner's JSON, as measured
    emulation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if any(c.status == FAIL for c in self.checks):
            return FAIL
        return PASS if self.passed else "incomplete"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status
        return d

    def _where(self) -> str:
        """Where latency was measured, and whether that is the target (x86 numbers for ARM say so)."""
        off = any(c.name == "p90_latency_ms" and c.status == SKIP and c.measured is not None
                  for c in self.checks)  # measured, but not where the target runs
        system = self.profile["system"]
        machine = system["machine"] + (" under emulation" if system.get("emulated") else "")
        where = f"measured on {machine} via {self.device}"
        return where + (f", not on the {self.target} device" if off else "")

    def table(self) -> str:
        p = self.profile
        lat = p.get("latency") or {}
        rows = [("target", self.target), ("device", self.device), ("model", self.model),
                ("cpu", f"{p['system']['machine']} {p['system']['cpu_model']}"),
                ("onnxruntime", f"{p['runtime']['onnxruntime']}  threads {p['runtime']['threads']}  "
                                f"{', '.join(p['runtime']['providers_used'])}")]
        if self.accuracy is not None:
            base = "" if self.baseline_accuracy is None else f"  (baseline {self.baseline_accuracy:.4f})"
            batching = p["accuracy"].get("batching")
            rows.append(("accuracy", f"{self.accuracy:.4f} on {p['accuracy']['n']} examples{base}"
                                     + (f"; {batching}" if batching else "")))
        if lat:
            rows.append(("latency", f"cold {lat['cold_start_ms']:.1f} ms  p50 {lat['p50_ms']:.2f}  "
                                    f"p90 {lat['p90_ms']:.2f}  p99 {lat['p99_ms']:.2f} ms  "
                                    f"{lat['throughput_per_s']:.1f}/s  "
                                    f"(batch {lat['batch']}, seq {lat['seq_len']}; {self._where()})"))
        rows.append(("memory", f"peak RSS {p['memory']['peak_rss_mb']:.1f} MB"))
        rows.append(("size", f"{p['model']['size_mb']:.2f} MB ({p['model']['file']})"))
        if p.get("operators"):
            top = p["operators"]["top"][:6]
            rows.append(("top ops", ", ".join(f"{o['op']} {o['share']:.0%}" for o in top)))
        if self.emulation:
            e = self.emulation
            agree = f"min cosine {e['min_cosine_arm_vs_x86']:.6f}" if e.get("metric") == "spearman" else \
                f"agreement {e['argmax_agreement']:.4f}"
            rows.append(("arm emulated", f"{e['cpu']}: {e.get('metric', 'accuracy')} {e['accuracy_arm']}  "
                                         f"vs x86 {e['accuracy_x86']}  {agree}  max|dlogit| "
                                         f"{e['max_abs_logit_diff']:.4g}"))
        w = max(len(r[0]) for r in rows)
        lines = [f"{k:<{w}}  {v}" for k, v in rows]
        lines.append("")
        lines.append(f"{'budget':<16} {'status':<6} {'measured':>10} {'limit':>10}  reason")
        for c in self.checks:
            m = "-" if c.measured is None else f"{c.measured:.4g}"
            lines.append(f"{c.name:<16} {c.status.upper():<6} {m:>10} {c.limit:>10.4g}  {c.reason}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"result: {self.status.upper()}")
        return "\n".join(lines)


# --- staging ---------------------------------------------------------------------------------------


def _model_file(path: Path) -> tuple[Path, Path]:
    """(folder, model file) from a package/export folder or a model file inside one."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix not in (".onnx", ".ort"):
            raise UsageError(f"{path} is not an ONNX model", "expected a .onnx/.ort file or a folder",
                             "pass the package folder or the model file")
        return path.parent, path
    if path.is_dir():
        for n in MODEL_NAMES:
            if (path / n).is_file():
                return path, path / n
        found = sorted(p.name for p in path.glob("*.onnx"))
        raise PackageError(f"no model.onnx or model.ort in {path}",
                           f"ONNX files there: {', '.join(found) or 'none'}",
                           "pass the model file itself, or the folder written by export/quantize/build")
    raise UsageError(f"{path} not found", "no such file or folder", "pass an existing package or model")


def _runner_reads(data: Path, id2label: dict, scored: bool = False) -> bool:
    """True when the device-side runner reads ``data`` as it is (eval.jsonl / eval.tsv format);
    ``scored``: as graded pairs (embedding models)."""
    from cahp_edge.runtime import RunnerError
    from cahp_edge.runtime.package import load_eval

    if data.suffix not in (".jsonl", ".tsv"):
        return False
    try:
        load_eval(data, {int(k): v for k, v in id2label.items()}, scored=scored)
    except (RunnerError, ValueError):
        return False
    return True


def _stage_tagged(data: Path, id2label: dict, dest: Path, link) -> None:
    from cahp_edge.data.tagged import check_tags, eval_rows, read_conll

    if data.suffix == ".jsonl":
        link(data.resolve(), dest)
        return
    ds = read_conll(data, "dev")
    check_tags(ds, [str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))])
    with open(dest, "w", encoding="utf-8") as f:
        for row in eval_rows(ds):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def score_entities(profile: dict, stage: Path) -> None:
    """A token classifier's entity F1 (seqeval, on the host) from the runner's per-word predictions on
    the staged eval file: written into the profile's accuracy block as its ``accuracy``."""
    acc = profile.get("accuracy") or {}
    if acc.get("metric") != "entity_f1" or "predicted_tags" not in acc:
        return
    from cahp_edge.model.tagging import entity_scores

    lines = (stage / "eval.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines if x.strip()]
    gold = [r["tags"] for r in rows][: len(acc["predicted_tags"])]
    s = entity_scores(gold, acc["predicted_tags"])
    acc.update({"accuracy": round(s["f1"], 6), "entity_f1": round(s["f1"], 6),
                "precision": round(s["precision"], 6), "recall": round(s["recall"], 6),
                "entities": s["support"]})


def _write_eval(data: Path, id2label: dict, dest: Path, scored: bool = False) -> None:
    from cahp_edge.data import align_labels, load_dataset

    if scored:
        ds = load_dataset(data, scores=True)
        with open(dest, "w", encoding="utf-8") as f:
            for t, p, s in zip(ds.texts, ds.pairs or [None] * len(ds), ds.scores, strict=True):
                f.write(json.dumps({"score": s, "text": t, "text_pair": p}, ensure_ascii=False) + "\n")
        return
    ds = align_labels(load_dataset(data), id2label)
    with open(dest, "w", encoding="utf-8") as f:
        for i, (t, y) in enumerate(zip(ds.texts, ds.labels, strict=True)):
            row = {"label": y, "text": t}
            if ds.pairs is not None:
                row["text_pair"] = ds.pairs[i]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def stage_package(model: Path, target: Target, data: Path | None, dest: Path, copy: bool,
                  packaged_eval: bool = True) -> Path:
    """A runner package in ``dest``: the model, its tokenizer/config, eval data and target.json.

    Local runs link to the user's files (never written through: everything written here is a new file).
    """
    folder, model_file = _model_file(model)
    missing = [n for n in ("tokenizer.json", "config.json") if not (folder / n).is_file()]
    if missing:
        raise PackageError(f"{folder} lacks {', '.join(missing)}",
                           "the runner tokenizes and labels on its own",
                           "validate the folder written by `cahp-edge export`/`quantize`/`build`")
    link = shutil.copy2 if copy else os.symlink
    dest.mkdir(parents=True, exist_ok=True)
    link(model_file.resolve(), dest / f"model{model_file.suffix}")
    ext_data = model_file.with_name(model_file.name + ".data")  # external weights (models > 2 GB)
    if ext_data.is_file():
        link(ext_data.resolve(), dest / ext_data.name)
    for n in ("tokenizer.json", "config.json"):
        link((folder / n).resolve(), dest / n)
    if data is not None:
        try:
            config = json.loads((folder / "config.json").read_text())
            # an embedding model has no labels: its eval rows are graded pairs
            id2label = {} if config.get("cahp_task") == "sentence-embedding" else config["id2label"]
        except (OSError, ValueError, KeyError) as e:
            raise PackageError(f"{folder / 'config.json'} has no id2label", str(e),
                               "export the model from a fine-tuned classifier") from None
        scored = config.get("cahp_task") == "sentence-embedding"  # graded pairs, not labels
        data = Path(data)
        if config.get("cahp_task") == "token-classification":  # words + tags (CoNLL becomes eval.jsonl)
            _stage_tagged(data, id2label, dest / "eval.jsonl", link)
        elif _runner_reads(data, id2label, scored):  # the device's own format: scored exactly as shipped
            link(data.resolve(), dest / ("eval.tsv" if data.suffix == ".tsv" else "eval.jsonl"))
        else:  # any other format the data loader reads (pairs included) becomes the runner's eval.jsonl
            _write_eval(data, id2label, dest / "eval.jsonl", scored)
    elif packaged_eval:
        for n in EVAL_NAMES:
            if (folder / n).is_file():
                link((folder / n).resolve(), dest / n)
                break
    (dest / "target.json").write_text(json.dumps(target.summary(), indent=1))
    return dest


# --- running the runner ----------------------------------------------------------------------------


def runner_args(target: Target, nonce: str, runs: int | None = None, warmup: int | None = None,
                limit: int | None = None, threads: int | None = None, seq_len: int | None = None,
                batch: int | None = None) -> list[str]:
    b = target.benchmark
    return ["--json", "--nonce", nonce, "--threads", str(target.threads if threads is None else threads),
            "--providers", ",".join(target.execution_providers),
            "--disabled-optimizers", ",".join(target.disabled_optimizers), "--batch", str(batch or b.batch),
            "--seq-len", str(seq_len or b.seq_len), "--warmup", str(b.warmup if warmup is None else warmup),
            "--runs", str(b.runs if runs is None else runs), *(["--limit", str(limit)] if limit else [])]


def run_local_profile(package_dir: Path, args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, "-m", "cahp_edge.runtime", "profile", str(package_dir), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ValidateError(f"the runner did not finish within {timeout:.0f} s", "",
                            "lower --runs or --limit, or raise --timeout") from None
    return parse_runner_output(proc.stdout, proc.stderr, proc.returncode, "local runner")


def parse_runner_output(stdout: str, stderr: str, returncode: int, where: str) -> dict:
    """The runner's JSON; its error object becomes the matching CahpError (shared with remote.py)."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if isinstance(result, dict) and result.get("ok") is False and isinstance(result.get("error"), dict):
        err = result["error"]
        cls = _RUNNER_ERRORS.get(err.get("kind"), ValidateError)
        raise cls(f"{where}: {err.get('what', 'failed')}", err.get("why", ""), err.get("fix", ""))
    if returncode != 0 or not isinstance(result, dict) or result.get("ok") is not True:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ValidateError(f"{where} failed (exit {returncode})", tail[:300],
                            "run `python -m cahp_edge.runtime profile DIR` there to see the full error")
    return result


def _run_profile(device: str, package_dir: Path, args: list[str], timeout: float) -> dict:
    if device == "local":
        return run_local_profile(package_dir, args, timeout)
    import importlib

    try:
        remote = importlib.import_module("cahp_edge.targets.remote")  # lazy: ssh/adb support is optional
    except ModuleNotFoundError as e:
        if e.name != "cahp_edge.targets.remote":
            raise
        raise DeviceError(f"device {device!r} needs remote support",
                          "cahp_edge/targets/remote.py is not installed",
                          "use --device local, or install a cahp-edge with ssh/adb support") from None
    return remote.run_remote_profile(device, package_dir, args, timeout)


def _check_fresh(result: dict, nonce: str, model_sha: str, device: str) -> None:
    if result.get("nonce") != nonce:
        raise ValidateError(f"device {device} returned a result from another run", "the nonce does not match",
                            "re-run validate; clear stale result files on the device")
    if result.get("model", {}).get("sha256") != model_sha:
        raise ValidateError(f"device {device} measured a different model",
                            "the model's sha256 does not match",
                            "re-run validate so the package is copied again")


# --- budgets -----------------------------------------------------------------------------------------


def check_budgets(target: Target, profile: dict, baseline: float | None, on_target_arch: bool,
                  arm_accuracy: float | None = None) -> tuple[list[Check], float | None]:
    b = target.budgets
    checks = []
    acc = arm_accuracy if arm_accuracy is not None else (profile.get("accuracy") or {}).get("accuracy")
    drop = None
    if acc is None:
        checks.append(Check("accuracy_drop", SKIP, None, b.max_accuracy_drop,
                            "no evaluation data (pass --data)"))
    elif baseline is None:
        checks.append(Check("accuracy_drop", SKIP, None, b.max_accuracy_drop,
                            "no baseline accuracy (pass --reference or --baseline-accuracy)"))
    else:
        drop = round(baseline - acc, 6)
        ok = drop <= b.max_accuracy_drop + 1e-9
        checks.append(Check("accuracy_drop", PASS if ok else FAIL, drop, b.max_accuracy_drop,
                            f"accuracy {acc:.4f} vs baseline {baseline:.4f}"
                            + ("" if ok else f": drops {drop:.4f}, more than {b.max_accuracy_drop}")))
    lat = profile.get("latency")
    if lat is None:
        checks.append(Check("p90_latency_ms", SKIP, None, b.p90_latency_ms, "latency was not measured"))
    elif profile["system"].get("emulated") or not on_target_arch:
        checks.append(Check("p90_latency_ms", SKIP, lat["p90_ms"], b.p90_latency_ms,
                            f"measured on {profile['system']['machine']}, not on the target's {target.arch}: "
                            "not device latency (use --device ssh:// or adb://)"))
    else:
        ok = lat["p90_ms"] <= b.p90_latency_ms
        checks.append(Check("p90_latency_ms", PASS if ok else FAIL, lat["p90_ms"], b.p90_latency_ms,
                            f"batch {lat['batch']}, seq {lat['seq_len']}, {lat['runs']} runs"
                            + ("" if ok else ": slower than the budget")))
    size = profile["model"]["size_mb"]
    checks.append(Check("size_mb", PASS if size <= b.max_size_mb else FAIL, size, b.max_size_mb,
                        profile["model"]["file"]
                        + ("" if size <= b.max_size_mb else ": larger than the budget")))
    mem = profile["memory"]["peak_rss_mb"]
    checks.append(Check("peak_memory_mb", PASS if mem <= b.max_peak_memory_mb else FAIL, mem,
                        b.max_peak_memory_mb, "peak RSS of the runner process at the benchmark shape"
                        + ("" if mem <= b.max_peak_memory_mb else ": more than the budget")))
    return checks, drop


def _emulate(stage: Path, target: Target, limit: int | None, seq_len: int, timeout: float) -> dict:
    from cahp_edge.runtime.package import load_eval, open_package
    from cahp_edge.runtime.tokenize import encode, load_tokenizer, pad_id_of
    from cahp_edge.targets import emulate

    pkg = open_package(stage)
    if pkg.eval_file is None:
        raise UsageError("--emulate needs evaluation data", "", "pass --data EVAL")
    if pkg.task == "token-classification":
        raise UsageError("--emulate does not score token classifiers yet", "the emulated run compares one "
                         "output row per example", "drop --emulate for this release")
    data = load_eval(pkg.eval_file, pkg.id2label, limit, scored=pkg.embeds)
    tok = load_tokenizer(pkg.tokenizer, seq_len)
    pad = pad_id_of(tok, pkg.pad_token_id)
    # embeddings: each side of a pair on its own (texts, then pairs), as the runner scores them
    enc = encode(tok, data.texts + data.pairs, None, pad) if pkg.embeds else \
        encode(tok, data.texts, data.pairs, pad)
    examples = [{"input_ids": i, "attention_mask": [1] * len(i), "token_type_ids": t}
                for i, t in zip(enc.ids, enc.type_ids, strict=True)]
    cmp = emulate.compare_with_host(pkg.model, examples, None if pkg.embeds else data.labels,
                                    cpu=target.cpu, pad_id=pad, timeout=timeout)
    out = cmp.to_dict()
    if pkg.embeds:
        out.update(_emulated_spearman(cmp.host.logits, cmp.arm.logits, data.scores))
    return out


def _emulated_spearman(host, arm, scores: list[float]) -> dict:
    """STS Spearman of the x86 and the emulated ARM embeddings ((2N, D): texts then pairs), and how far
    the two platforms' vectors are apart (cosine)."""
    from cahp_edge.runtime.similarity import pair_cosines, spearman

    n = len(scores)
    rho = {k: spearman(pair_cosines(e[:n], e[n:]), scores) for k, e in (("x86", host), ("arm", arm))}
    return {"metric": "spearman", "accuracy_x86": rho["x86"], "accuracy_arm": rho["arm"],
            "accuracy_drop_arm_vs_x86": rho["x86"] - rho["arm"], "argmax_agreement": None, "flips": None,
            "min_cosine_arm_vs_x86": float(pair_cosines(host, arm).min())}


def _release_baseline(model: Path, profile: dict, notes: list[str]) -> float | None:
    """A release's own dense fp32 accuracy (metrics.json) when it was measured on the very eval file
    just scored (same sha256); otherwise None (the accuracy budget is then reported as not checked)."""
    folder = model if model.is_dir() else model.parent
    try:
        doc = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        dense = doc["raw"]["dense"]["profile"]["accuracy"]
        acc, sha = float(dense["accuracy"]), dense["eval_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if sha != (profile.get("accuracy") or {}).get("eval_sha256"):
        return None
    notes.append(f"baseline accuracy {acc:.4f}: the dense fp32 model's, from {folder.name}/metrics.json "
                 f"(measured by the build on the same eval file, sha256 {sha[:12]})")
    return acc


def validate(model: Path | str, target: Target | str, *, data: Path | None = None, device: str = "local",
             reference: Path | None = None, baseline_accuracy: float | None = None, runs: int | None = None,
             warmup: int | None = None, limit: int | None = None, threads: int | None = None,
             seq_len: int | None = None, batch: int | None = None, emulate: bool = False,
             timeout: float = 900.0) -> Report:
    """Measure ``model`` on ``device`` with ``target``'s settings and check its budgets."""
    tgt = target if isinstance(target, Target) else load_target(target)
    if baseline_accuracy is not None and not 0.0 <= baseline_accuracy <= 1.0:
        raise UsageError("--baseline-accuracy must be a fraction in [0, 1]", f"got {baseline_accuracy}",
                         "e.g. 0.91 for 91%")
    if reference is not None and baseline_accuracy is not None:
        raise UsageError("--reference and --baseline-accuracy both given", "", "pass only one of them")
    notes: list[str] = []
    nonce = secrets.token_hex(8)
    args = runner_args(tgt, nonce, runs, warmup, limit, threads, seq_len, batch)
    with tempfile.TemporaryDirectory(prefix="cahp-validate-") as tmp:
        stage = stage_package(Path(model), tgt, data, Path(tmp) / "pkg", copy=device != "local")
        model_sha = sha256_file(next(p for p in stage.iterdir() if p.name in MODEL_NAMES))
        profile = _run_profile(device, stage, args, timeout)
        _check_fresh(profile, nonce, model_sha, device)
        score_entities(profile, stage)
        if reference is not None:
            if profile.get("accuracy") is None:
                raise UsageError("--reference needs evaluation data", "", "pass --data EVAL")
            ref_stage = stage_package(Path(reference), tgt, None, Path(tmp) / "ref", copy=False,
                                      packaged_eval=False)
            for n in EVAL_NAMES:  # the same examples as the measured model, whatever their source
                if (stage / n).exists():
                    shutil.copy2(stage / n, ref_stage / n)
            ref_nonce = secrets.token_hex(8)
            ref_args = ["--json", "--nonce", ref_nonce, "--no-latency", "--no-operators",
                        "--threads", str(tgt.threads), "--seq-len", str(seq_len or tgt.benchmark.seq_len),
                        *(["--limit", str(limit)] if limit else [])]
            ref = run_local_profile(ref_stage, ref_args, timeout)
            score_entities(ref, ref_stage)
            if ref.get("nonce") != ref_nonce or ref.get("accuracy") is None:
                raise ValidateError("reference run returned no fresh accuracy", "", "check --reference")
            baseline_accuracy = ref["accuracy"]["accuracy"]
            notes.append(f"baseline accuracy measured locally on {reference}")
        if reference is None and baseline_accuracy is None and data is None and limit is None:
            baseline_accuracy = _release_baseline(Path(model), profile, notes)
        emu = None
        if emulate:
            if tgt.arch != "aarch64":
                raise UsageError("--emulate is for aarch64 targets", f"{tgt.name} is {tgt.arch}",
                                 "drop --emulate")
            emu = _emulate(stage, tgt, limit, seq_len or tgt.benchmark.seq_len, timeout)
    on_arch = ARCH_ALIASES.get(profile["system"]["machine"].lower()) == tgt.arch
    if not on_arch:
        notes.append(f"measured on {profile['system']['machine']}, target is {tgt.arch}: latency is not the "
                     "target's; " + ("accuracy uses emulated ARM kernels" if emu else
                                     "accuracy uses this CPU's kernels (add --emulate for ARM numerics)"))
    notes += profile.get("notes", [])
    checks, drop = check_budgets(tgt, profile, baseline_accuracy, on_arch,
                                 emu["accuracy_arm"] if emu else None)
    passed = all(c.status == PASS for c in checks)
    acc = emu["accuracy_arm"] if emu else (profile.get("accuracy") or {}).get("accuracy")
    return Report(tgt.name, device, str(model), passed, checks, acc, baseline_accuracy, drop, profile,
                  emu, notes)

