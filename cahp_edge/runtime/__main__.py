"""python -m cahp_edge.runtime profile PACKAGE_DIR --json [--data EVAL] [--threads N] [--runs N] ...

Exit codes: 0 measured, 1 the package, data or runtime failed (one line on stderr; with --json also a
JSON object with "ok": false on stdout), 2 bad usage. Needs only onnxruntime, numpy and tokenizers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import EVAL_BATCH_SIZE, SCHEMA, RunnerError


def _parser() -> argparse.ArgumentParser:
    # the package name it runs under: cahp_edge.runtime here, cahp_edge_runtime inside a release
    p = argparse.ArgumentParser(prog=f"python -m {__package__ or 'cahp_edge.runtime'}",
                                description="Measure a cahp-edge package on this device.")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("profile", help="accuracy, cold start, latency percentiles, memory, top operators")
    pr.add_argument("package", type=Path,
                    help="package folder (model.onnx|model.ort, tokenizer.json, config.json)")
    pr.add_argument("--json", action="store_true", help="print the result as JSON (for machines)")
    pr.add_argument("--data", type=Path, help="eval data (eval.jsonl / eval.tsv); default: the package's")
    pr.add_argument("--threads", type=int, help="intra-op threads (0 = ONNX Runtime default)")
    pr.add_argument("--providers", help="comma-separated execution providers, in priority order")
    pr.add_argument("--disabled-optimizers", metavar="NAMES",
                    help="comma-separated ONNX Runtime graph rewrites to turn off (default: target.json's; "
                         "'' for none), e.g. SkipLayerNormFusion")
    pr.add_argument("--batch", type=int)
    pr.add_argument("--seq-len", type=int, help="benchmark sequence length; also the truncation length")
    pr.add_argument("--warmup", type=int)
    pr.add_argument("--runs", type=int)
    pr.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE,
                    help=f"rows per length-sorted evaluation batch (default {EVAL_BATCH_SIZE}; int8 "
                         "logits depend on it slightly)")
    pr.add_argument("--limit", type=int, help="evaluate only the first N examples")
    pr.add_argument("--format", choices=["onnx", "ort"], dest="fmt")
    pr.add_argument("--no-latency", action="store_true", help="skip latency (e.g. under emulation)")
    pr.add_argument("--no-operators", action="store_true", help="skip the ORT profiling pass")
    pr.add_argument("--profile-runs", type=int, default=10)
    pr.add_argument("--nonce", default="", help="echoed in the JSON so the caller can tell a fresh result")
    pr.add_argument("--logits-out", type=Path, help="write eval logits (N, labels) to this .npy file")
    pr.add_argument("--public-key", type=Path,
                    help="refuse the package unless SHA256SUMS.sig was made by this key (OpenSSH .pub)")
    return p


def _human(r: dict) -> str:
    m, rt = r["model"], r["runtime"]
    lines = [f"model      {m['file']}  {m['size_mb']} MB  sha256 {m['sha256'][:12]}",
             f"system     {r['system']['machine']}  {r['system']['cpu_model']}  ORT {rt['onnxruntime']}"
             f"  threads {rt['threads']}  {','.join(rt['providers_used'])}"]
    if r["latency"]:
        lat = r["latency"]
        lines.append(f"latency    cold {lat['cold_start_ms']:.1f} ms  p50 {lat['p50_ms']:.2f}"
                     f"  p90 {lat['p90_ms']:.2f}"
                     f"  p99 {lat['p99_ms']:.2f} ms  {lat['throughput_per_s']:.1f}/s"
                     f"  (batch {lat['batch']}, seq {lat['seq_len']})")
    lines.append(f"memory     peak RSS {r['memory']['peak_rss_mb']:.1f} MB")
    if r["accuracy"]:
        a = r["accuracy"]
        lines.append(f"accuracy   {a['accuracy']:.4f}  ({a['correct']}/{a['n']})")
    if r["operators"]:
        top = r["operators"]["top"][:5]
        lines.append("operators  " + ", ".join(f"{o['op']} {o['share']:.0%}" for o in top))
    lines += [f"note       {n}" for n in r["notes"]]
    return "\n".join(lines)


def _names(text: str | None) -> list[str]:
    """A comma-separated option as a list, blanks dropped."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from .profile import Settings, profile_package  # needs numpy: a device may lack it
    except ModuleNotFoundError as e:
        return _missing(e, args)
    providers = _names(args.providers) or None  # "" = the target's providers
    disabled = None if args.disabled_optimizers is None else _names(args.disabled_optimizers)  # "" = none
    s = Settings(threads=args.threads, batch=args.batch, seq_len=args.seq_len, warmup=args.warmup,
                 runs=args.runs, eval_batch_size=args.eval_batch_size, limit=args.limit, data=args.data,
                 fmt=args.fmt, latency=not args.no_latency, operators=not args.no_operators,
                 profile_runs=args.profile_runs, logits_out=args.logits_out,
                 providers=providers, disabled_optimizers=disabled)
    try:
        if args.public_key is not None:  # before anything in the package is loaded
            from .signature import check_signature

            check_signature(args.package, args.public_key)
        result = profile_package(args.package, s)
    except ModuleNotFoundError as e:
        return _missing(e, args)
    except RunnerError as e:
        return _fail(e, args.json, args.nonce)
    except MemoryError:
        err = RunnerError("runtime", "out of memory while profiling", "",
                          "lower --batch/--eval-batch-size or free memory on the device")
        return _fail(err, args.json, args.nonce)
    except OSError as e:
        err = RunnerError("runtime", "I/O error while profiling", str(e),
                          "check free disk space and permissions on the device")
        return _fail(err, args.json, args.nonce)
    result["nonce"] = args.nonce
    print(json.dumps(result) if args.json else _human(result))
    return 0


def _missing(e: ModuleNotFoundError, args) -> int:
    err = RunnerError("runtime", f"python module {e.name!r} is not installed on this device",
                      "the runner needs onnxruntime, numpy and tokenizers",
                      f"pip install onnxruntime numpy tokenizers (missing: {e.name})")
    return _fail(err, args.json, args.nonce)


def _fail(e: RunnerError, as_json: bool, nonce: str = "") -> int:
    print(f"error: {e}", file=sys.stderr)
    if as_json:
        print(json.dumps({"schema": SCHEMA, "ok": False, "nonce": nonce, "error": e.to_dict()}))
    return 2 if e.kind == "usage" else 1


if __name__ == "__main__":
    sys.exit(main())
