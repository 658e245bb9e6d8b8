"""`cahp-edge build`, `demo`, `verify`: the main job, its offline demo, and checking a release.

cahp-edge build --model ckpt/ --data train.tsv --eval dev.tsv --target rpi5-arm64 --target x86-64-avx2
cahp-edge demo --out dist/
cahp-edge verify dist/rpi5-arm64.tar.gz
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from cahp_edge.build.options import BuildOptions
from cahp_edge.cli.app import Json, Quiet, app, emit, note
from cahp_edge.cli.options import stage_options
from cahp_edge.cli.progress import Progress

_Out = Annotated[
    Path | None,
    typer.Option("--out", help="Release folder: dist/<target>/ + <target>.tar.gz. Default: dist."),
]
_Force = Annotated[bool, typer.Option("--force", help="Recompute every stage instead of reusing the cache.")]


class _Render:
    """Events -> one line per stage on stderr, and progress inside long stages (cli.progress)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = Progress(quiet)
        self.pending: list[int] = []  # signals that arrived where raising would have been swallowed

    def checkpoint(self) -> None:
        if self.pending:
            raise KeyboardInterrupt

    def stage(self, rec, line: str) -> None:
        self._stop()
        note(line, self.quiet)
        self.checkpoint()

    def progress(self, task: str, done: int, total: int) -> None:
        self.bar.update(task, done, total)
        self.checkpoint()

    def _stop(self) -> None:
        self.bar.stop()


@contextlib.contextmanager
def _interruptible(render: _Render):
    """SIGTERM unwinds like Ctrl-C: temporary folders are removed, finished stages kept, exit 130.

    A signal that lands inside the import machinery is not raised there (CPython would swallow it in a
    module lock's callback and print a traceback): it is raised at the next stage or progress event.

    As the `cahp-edge` program the exit is ``os._exit(130)`` after the unwinding: CPython remembers a
    KeyboardInterrupt that crossed certain C boundaries (e.g. inside an import) and would otherwise
    kill itself with SIGINT at shutdown, so the exit status would depend on where the signal landed.
    A Python caller of ``cli.main(argv)`` gets the interrupt re-raised (main reports it, exit 130)
    and keeps its interpreter.
    """
    from cahp_edge.cli import app as cli_app

    def handler(signum, frame):
        # inside the import machinery (e.g. a module lock's weakref callback) CPython swallows the exception
        # and prints a traceback: remember the signal and raise at the next stage or progress event instead
        if frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            render.pending.append(signum)
            return
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    old_int = signal.signal(signal.SIGINT, handler)  # Ctrl-C: the same deferral inside imports
    try:
        yield
        render.checkpoint()  # a deferred signal with no event after it still ends the run as interrupted
    except BaseException as e:
        if not cli_app.interrupted(e):
            raise
        render._stop()
        if not cli_app.OWN_PROCESS:
            raise
        note("interrupted: finished stages are kept; re-run the same command to resume")
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(130)
    finally:
        render._stop()
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)


def _finish(res, as_json: bool, quiet: bool, render: _Render, strict: bool = False) -> None:
    render._stop()
    lines = []
    for t, rel in res.releases.items():
        v = res.verdicts.get(t, {})
        lines.append(f"{t}: {rel.dir}  {rel.tarball}  budgets {v.get('status', '?')}")
    note(
        f"build: {len(res.releases)} release(s) in {res.seconds:.0f} s "
        f"({len(res.recomputed)} stage(s) run, {len(res.stages) - len(res.recomputed)} cached)",
        quiet,
    )
    emit(res.to_dict(), as_json, "\n".join(lines))
    failed = {t: v.get("failed", []) for t, v in res.verdicts.items() if v.get("status") == "fail"}
    if strict and failed:
        from cahp_edge.errors import ValidateError

        why = "; ".join(f"{t}: {', '.join(f)}" for t, f in failed.items())
        raise ValidateError("release(s) built but over budget", why,
                            "see metrics.json; relax the budget or prune less (--heads, --max-drop)")


@app.command()
@stage_options(overrides=True, exclude=("model", "data", "eval", "targets", "out", "benchmark"),
               given=BuildOptions)
def build(
    model: Annotated[
        str | None,
        typer.Option(help="Fine-tuned classifier: folder or hub id. Required, here or in --config."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Training data (calibration, selection, recovery). Required, here or in --config."),
    ] = None,
    eval_data: Annotated[
        str | None, typer.Option("--eval", help="Evaluation data (reported accuracy).")
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", metavar="TARGET", help="Target name or .toml; repeat."),
    ] = None,
    out: _Out = None,
    config: Annotated[Path | None, typer.Option(help="build.toml holding any of these options.")] = None,
    given: dict | None = None,
    runs: Annotated[int | None, typer.Option(help="Timed latency runs (overrides the targets').")] = None,
    force: _Force = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a release misses a budget.")] = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Prune, recover, export, optimize, then quantize, validate and package for every --target.

    Every stage option below is also a `build.toml` key (same name, underscores); the command line wins.
    """
    from cahp_edge.build.options import make_options
    from cahp_edge.build.pipeline import build as run

    cli = {
        **(given or {}),
        "model": model,
        "data": data,
        "eval": eval_data,
        "targets": list(target or []),
        "out": str(out) if out else None,
        "benchmark": {"runs": runs},
    }
    opts = make_options(cli, config)
    if config is not None:  # the pipeline checks the other inputs; the config file is only known here
        from cahp_edge.fsutil import check_not_input

        check_not_input(Path(opts.out), [config])
    render = _Render(quiet)
    with _interruptible(render):
        res = run(opts, force=force, events=render)
    _finish(res, as_json, quiet, render, strict)


@app.command()
def demo(
    out: _Out = None,
    target: Annotated[
        list[str] | None, typer.Option("--target", "-t", metavar="TARGET", help="Target(s). Default: host.")
    ] = None,
    force: _Force = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Offline demo: fine-tune the packaged all-MiniLM-L6-v2 on shipped sentiment set; build for this host."""
    from cahp_edge.build.demo import demo as run

    render = _Render(quiet)
    with _interruptible(render):
        res = run(out or Path("dist"), targets=list(target or []) or None, force=force, events=render)
    _finish(res, as_json, quiet, render)


@app.command()
def verify(
    package: Annotated[Path, typer.Argument(help="Release folder or its .tar.gz.")],
    smoke: Annotated[
        bool, typer.Option("--smoke/--no-smoke", help="Run one inference with the runner.")
    ] = True,
    public_key: Annotated[Path | None, typer.Option(
        help="Require SHA256SUMS.sig made by this key's private half (the .pub from `cahp-edge keygen`).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Check every file against SHA256SUMS (missing, changed, extra) and run a smoke inference."""
    from cahp_edge.release.package import verify as run

    r = run(package, smoke=smoke, public_key=public_key)
    human = f"{package}: OK, {r.files_checked} files match SHA256SUMS" + (
        f", signed by {public_key}" if public_key else "")
    if r.smoke:
        acc, want = r.smoke.get("accuracy"), r.smoke.get("expected_accuracy")
        human += f"; smoke inference OK (p50 {r.smoke.get('p50_ms')} ms" + (
            f", {r.smoke.get('metric', 'accuracy')} on the {r.smoke.get('n')} bundled eval rows {acc:.4f}"
            if acc is not None else ""
        ) + (f", metrics.json {want:.4f})" if want is not None else ")")
    emit(r.to_dict(), as_json, human)
