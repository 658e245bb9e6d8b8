"""The measurements: cold start, warm latency percentiles, peak memory, accuracy, top operators.

`profile_package(...)` returns one JSON-ready dict (schema ``cahp-edge-profile/1``). It is what
`python -m cahp_edge.runtime profile` prints and what `cahp-edge validate` checks budgets against,
locally or from a remote device, so both paths measure the same way.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import EVAL_BATCH_SIZE, SCHEMA, RunnerError
from .package import load_eval, open_package, sha256_file
from .similarity import pair_cosines, spearman
from .sysinfo import current_rss_mb, peak_rss_mb, system_info
from .tagging import load_tagged_eval, predict_word_tags, tag_accuracy
from .tokenize import encode, length_sorted_batches, load_tokenizer, pad_id_of, synthetic_batch


@dataclass
class Settings:
    threads: int | None = None  # None: target.json's, else 0 (ORT default)
    providers: list[str] | None = None  # None: target.json's, else CPU
    disabled_optimizers: list[str] | None = None  # None: target.json's, else none
    batch: int | None = None
    seq_len: int | None = None
    warmup: int | None = None
    runs: int | None = None
    eval_batch_size: int = EVAL_BATCH_SIZE
    limit: int | None = None  # evaluate only the first N examples
    data: Path | None = None
    fmt: str | None = None  # "onnx" | "ort"
    latency: bool = True
    operators: bool = True
    profile_runs: int = 10
    logits_out: Path | None = None
    notes: list[str] = field(default_factory=list)


DEFAULT_BENCH = {"batch": 1, "seq_len": 128, "warmup": 10, "runs": 100}


def _resolve(s: Settings, target: dict | None) -> dict:
    bench = dict(DEFAULT_BENCH)
    if target and isinstance(target.get("benchmark"), dict):
        bench.update({k: v for k, v in target["benchmark"].items() if k in bench})
    for k in bench:
        if getattr(s, k) is not None:
            bench[k] = getattr(s, k)
    threads = s.threads if s.threads is not None else int((target or {}).get("threads", 0))
    providers = s.providers or list((target or {}).get("execution_providers") or ["CPUExecutionProvider"])
    for k, v in {**bench, "threads": threads, "eval_batch_size": s.eval_batch_size}.items():
        if not isinstance(v, int) or v < (0 if k in ("warmup", "threads") else 1):
            raise RunnerError("usage", f"--{k.replace('_', '-')} must be a whole number >= "
                              f"{0 if k in ('warmup', 'threads') else 1}", f"got {v!r}", "fix the option")
    disabled = s.disabled_optimizers
    if disabled is None:
        disabled = list((target or {}).get("disabled_optimizers") or [])
    return {**bench, "threads": threads, "providers": providers, "eval_batch_size": s.eval_batch_size,
            "disabled_optimizers": disabled}


def _session(ort, model: Path, threads: int, providers: list[str], profile_dir: str | None = None,
             disabled: list[str] = ()):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if profile_dir is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(profile_dir, "ort")
    try:
        # disabled: graph rewrites the target turns off (ORT ignores names it does not know)
        return ort.InferenceSession(str(model), sess_options=opts, providers=providers,
                                    disabled_optimizers=list(disabled))
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunnerError("model", f"ONNX Runtime cannot load {model}", first[:300],
                          "the file may be truncated or need a newer onnxruntime: copy or rebuild it"
                          ) from None


def _run(sess, feeds: dict):
    try:
        return sess.run(None, feeds)
    except Exception as e:  # ORT raises its own Fail/RuntimeException types
        shapes = {k: list(v.shape) for k, v in feeds.items()}
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise RunnerError("model", f"inference failed on inputs {shapes}", first,
                          "check the model and its tokenizer belong together and the sequence length fits"
                          ) from None


def _feeds(sess, ids, mask, types) -> dict:
    by_name = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    feeds = {}
    for i in sess.get_inputs():
        if i.name not in by_name:
            raise RunnerError("model", f"model input {i.name!r} is not one the runner can fill",
                              "expected input_ids, attention_mask, token_type_ids",
                              "export the model with cahp-edge export")
        arr = by_name[i.name]
        feeds[i.name] = arr.astype(np.int32) if i.type == "tensor(int32)" else arr
    return feeds


def _top_operators(profile_file: str, top: int = 10) -> list[dict]:
    with open(profile_file, encoding="utf-8") as f:
        events = json.load(f)
    per_op: dict[str, list[float]] = {}
    for ev in events:
        if ev.get("cat") == "Node" and str(ev.get("name", "")).endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            agg = per_op.setdefault(op, [0.0, 0])
            agg[0] += float(ev.get("dur", 0))
            agg[1] += 1
    total = sum(v[0] for v in per_op.values()) or 1.0
    rows = sorted(per_op.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"op": op, "total_us": round(us, 1), "calls": n, "share": round(us / total, 4)}
            for op, (us, n) in rows]


def _outputs(sess, enc, batch_size: int) -> np.ndarray:
    """The graph's output for every encoded row, in row order (length-sorted batches)."""
    res = None
    for idx, b_ids, b_mask, b_types in length_sorted_batches(enc, batch_size):
        out = _run(sess, _feeds(sess, b_ids, b_mask, b_types))[0]  # (B, C) logits or (B, D) embeddings
        if res is None:
            res = np.zeros((len(enc.ids), out.shape[-1]), dtype=np.float32)
        res[idx] = out
    return res


def _embedding_quality(pkg, s, sess, tok, pad, cfg) -> dict:
    """Spearman x cosine on graded pairs: each side embedded on its own, as a search index would."""
    data = load_eval(pkg.eval_file, pkg.id2label, s.limit, scored=True)
    t0 = time.perf_counter()
    a = _outputs(sess, encode(tok, data.texts, None, pad), cfg["eval_batch_size"])  # (N, D)
    b = _outputs(sess, encode(tok, data.pairs, None, pad), cfg["eval_batch_size"])
    secs = time.perf_counter() - t0
    cos = pair_cosines(a, b)
    rho = spearman(cos, data.scores)
    res = {"metric": "spearman", "accuracy": round(rho, 6), "spearman": round(rho, 6), "n": len(cos),
           "eval_file": data.source, "eval_sha256": data.sha256, "seconds": round(secs, 3),
           "max_length": cfg["seq_len"], "embedding_dim": int(a.shape[-1]),
           "batching": f"length-sorted batches of {cfg['eval_batch_size']}, each padded to its longest row; "
                       "text and text_pair embedded separately"}
    if s.logits_out is not None:
        np.save(s.logits_out, np.concatenate([a, b]))  # (2N, D): texts then pairs
        res["logits_file"] = str(s.logits_out)
    return res


def _tagging_quality(pkg, s, sess, tok, pad, cfg) -> dict:
    """Per-word predicted tags on the eval sentences; entity F1 is scored on the host (seqeval)."""
    names = [pkg.id2label[i] for i in range(len(pkg.id2label))]
    words, gold = load_tagged_eval(pkg.eval_file, names, s.limit)
    t0 = time.perf_counter()
    pred = predict_word_tags(lambda i, m, t: _run(sess, _feeds(sess, i, m, t))[0], tok, words, names, pad,
                             cfg["eval_batch_size"])
    return {"metric": "entity_f1", "accuracy": None, "tag_accuracy": round(tag_accuracy(gold, pred), 6),
            "n": len(words), "words": sum(len(w) for w in words), "predicted_tags": pred,
            "eval_file": str(pkg.eval_file), "eval_sha256": sha256_file(pkg.eval_file),
            "seconds": round(time.perf_counter() - t0, 3), "max_length": cfg["seq_len"],
            "batching": f"length-sorted batches of {cfg['eval_batch_size']}, words pre-split, first "
                        "sub-token per word",
            "scored_by": "entity F1 is computed from predicted_tags on the host (seqeval)"}


def _pct(a: np.ndarray, q: float) -> float:
    return round(float(np.percentile(a, q)), 4)


def profile_package(root: Path, s: Settings | None = None) -> dict:
    s = s or Settings()
    import onnxruntime as ort
    import tokenizers

    rss_start = peak_rss_mb()
    pkg = open_package(Path(root), s.fmt, s.data)
    cfg = _resolve(s, pkg.target)
    notes = list(s.notes)
    explicit = s.seq_len is not None or "seq_len" in ((pkg.target or {}).get("benchmark") or {})
    if pkg.max_positions is not None and cfg["seq_len"] > pkg.max_positions and not explicit:
        notes.append(f"seq_len {cfg['seq_len']} lowered to the model's max_position_embeddings "
                     f"{pkg.max_positions}")
        cfg["seq_len"] = pkg.max_positions
    if pkg.max_positions is not None and cfg["seq_len"] > pkg.max_positions:
        raise RunnerError("usage", f"--seq-len {cfg['seq_len']} is longer than the model accepts",
                          f"config.json max_position_embeddings is {pkg.max_positions}",
                          f"pass --seq-len {pkg.max_positions} or less (or a target with a shorter seq_len)")
    available = ort.get_available_providers()
    providers = [p for p in cfg["providers"] if p in available]
    dropped = [p for p in cfg["providers"] if p not in available]
    if dropped:
        notes.append(f"execution providers not in this onnxruntime build, skipped: {', '.join(dropped)}")
    if "CPUExecutionProvider" not in providers:
        providers.append("CPUExecutionProvider")
    tok = load_tokenizer(pkg.tokenizer, cfg["seq_len"])
    pad = pad_id_of(tok, pkg.pad_token_id)

    result: dict = {
        "schema": SCHEMA,
        "ok": True,
        "run_id": uuid.uuid4().hex,  # fresh per run, so a stale JSON can never pass for a new one
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package": str(pkg.root.resolve()),
        "model": {"file": pkg.model.name, "format": pkg.model.suffix.lstrip("."),
                  "size_mb": round(pkg.model.stat().st_size / 2**20, 3),
                  "package_size_mb": round(sum(p.stat().st_size for p in pkg.root.rglob("*")
                                               if p.is_file()) / 2**20, 3),
                  "sha256": sha256_file(pkg.model), "checksums_verified": pkg.checksums_verified,
                  "num_labels": len(pkg.id2label)},
        "runtime": {"onnxruntime": ort.__version__, "numpy": np.__version__,
                    "tokenizers": tokenizers.__version__, "python": platform.python_version(),
                    "providers_requested": cfg["providers"], "providers_available": available},
        "system": system_info(),
        "settings": {k: cfg[k] for k in ("batch", "seq_len", "warmup", "runs", "threads", "eval_batch_size")},
        "notes": notes,
    }

    # cold start: what a user waits for after launching the app (session creation + first inference)
    ids, mask, types = synthetic_batch(tok, cfg["batch"], cfg["seq_len"])
    t0 = time.perf_counter()
    sess = _session(ort, pkg.model, cfg["threads"], providers, disabled=cfg["disabled_optimizers"])
    t1 = time.perf_counter()
    feeds = _feeds(sess, ids, mask, types)
    _run(sess, feeds)
    t2 = time.perf_counter()
    result["runtime"]["providers_used"] = sess.get_providers()
    result["runtime"]["threads"] = cfg["threads"]
    result["runtime"]["disabled_optimizers"] = cfg["disabled_optimizers"]
    result["latency"] = None
    if s.latency:
        for _ in range(cfg["warmup"]):
            _run(sess, feeds)
        times = np.empty(cfg["runs"], dtype=np.float64)
        for i in range(cfg["runs"]):
            a = time.perf_counter_ns()
            _run(sess, feeds)
            times[i] = (time.perf_counter_ns() - a) / 1e6
        result["latency"] = {
            "cold_start_ms": round((t2 - t0) * 1e3, 3), "session_create_ms": round((t1 - t0) * 1e3, 3),
            "first_run_ms": round((t2 - t1) * 1e3, 3),
            "p50_ms": _pct(times, 50), "p90_ms": _pct(times, 90), "p99_ms": _pct(times, 99),
            "mean_ms": round(float(times.mean()), 4), "min_ms": round(float(times.min()), 4),
            "max_ms": round(float(times.max()), 4), "runs": cfg["runs"],
            "throughput_per_s": round(cfg["batch"] * 1e3 / float(times.mean()), 3),
            "batch": cfg["batch"], "seq_len": cfg["seq_len"],
        }
    # serving peak: model + one inference at the benchmark shape (ru_maxrss only ever grows)
    result["memory"] = {"rss_before_load_mb": round(rss_start, 2), "peak_rss_mb": round(peak_rss_mb(), 2)}

    result["accuracy"] = None
    if pkg.eval_file is not None and pkg.embeds:
        result["accuracy"] = _embedding_quality(pkg, s, sess, tok, pad, cfg)
    elif pkg.eval_file is not None and pkg.task == "token-classification":
        result["accuracy"] = _tagging_quality(pkg, s, sess, tok, pad, cfg)
    elif pkg.eval_file is not None:
        data = load_eval(pkg.eval_file, pkg.id2label, s.limit)
        enc = encode(tok, data.texts, data.pairs, pad)
        t0 = time.perf_counter()
        logits = _outputs(sess, enc, cfg["eval_batch_size"])  # (N, num_labels)
        secs = time.perf_counter() - t0
        pred = logits.argmax(-1)
        correct = int((pred == np.asarray(data.labels)).sum())
        result["accuracy"] = {
            "accuracy": round(correct / len(data.labels), 6), "correct": correct, "n": len(data.labels),
            "eval_file": data.source, "eval_sha256": data.sha256, "seconds": round(secs, 3),
            "max_length": cfg["seq_len"], "predictions": pred.tolist(),
            "batching": f"length-sorted batches of {cfg['eval_batch_size']}, each padded to its longest row",
        }
        if s.logits_out is not None:
            np.save(s.logits_out, logits)
            result["accuracy"]["logits_file"] = str(s.logits_out)
    result["memory"]["peak_rss_total_mb"] = round(peak_rss_mb(), 2)
    result["memory"]["rss_now_mb"] = current_rss_mb()
    del sess

    result["operators"] = None
    if s.operators:
        with tempfile.TemporaryDirectory(prefix="cahp-prof-") as d:
            psess = _session(ort, pkg.model, cfg["threads"], providers, profile_dir=d,
                             disabled=cfg["disabled_optimizers"])
            pfeeds = _feeds(psess, ids, mask, types)
            for _ in range(max(1, s.profile_runs)):
                _run(psess, pfeeds)
            prof = psess.end_profiling()
            result["operators"] = {"top": _top_operators(prof), "profiled_runs": max(1, s.profile_runs)}
            del psess
    return result
