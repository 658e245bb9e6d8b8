"""The `cahp-edge` command line. Parses, prints, maps errors to exit codes; the work lives in stages.

Exit codes: 0 success, 1 runtime error (CahpError), 2 usage error, 130 interrupted.
Heavy imports (torch, transformers, onnxruntime) happen inside commands so `--help` is instant.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer

from cahp_edge.errors import CahpError

app = typer.Typer(
    name="cahp-edge",
    help="Prune attention heads with CAHP, reshape, export, quantize, validate and package for edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_STATE = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _STATE["debug"] = debug or os.environ.get("CAHP_DEBUG") == "1"


def emit(data: Any, as_json: bool, human: str | None = None) -> None:
    """The one place results reach stdout."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif human is not None:
        typer.echo(human)


def note(msg: str, quiet: bool = False) -> None:
    """Progress / summary lines go to stderr so stdout stays machine-readable."""
    if not quiet:
        typer.echo(msg, err=True)


def _register_commands() -> None:
    # each area owns one module that adds its commands to `app`
    from cahp_edge import cli_model  # noqa: F401

    for mod in ("cli_prune", "cli_export", "cli_targets", "cli_build", "cli_train"):
        try:
            __import__(f"cahp_edge.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"cahp_edge.{mod}":
                raise


# True when main() runs as the `cahp-edge` program (argv from the command line), False for a Python
# caller of main(argv): only the program may end the interpreter abruptly (see cli_build._interruptible)
OWN_PROCESS = False


def main(argv: list[str] | None = None) -> int:
    global OWN_PROCESS
    OWN_PROCESS = argv is None
    try:  # typer >= 0.20 vendors click and raises its own copy's exceptions, not the `click` package's
        from typer._click import ClickException
    except ImportError:  # pragma: no cover - older typer on the real click
        from click import ClickException

    # library chatter (load reports, progress bars, advisory warnings) would break the one-line contract
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:  # already imported (called from Python): env vars come too late
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    _register_commands()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("CAHP_DEBUG") == "1"
    if not debug:
        import warnings

        # torch/transformers/onnx warnings on stderr break the one-line contract; --debug shows them
        warnings.filterwarnings("ignore")
    try:
        rv = app(args=args, prog_name="cahp-edge", standalone_mode=False)
        # non-standalone typer *returns* exit codes: typer.Exit(n), and 130 for Ctrl-C / SIGTERM
        if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
            if rv == 130:
                typer.echo("interrupted: finished stages are kept; re-run the same command to resume",
                           err=True)
            sys.exit(rv)
        return 0
    except CahpError as e:
        if debug:
            raise
        typer.echo(f"error: {e.line()}", err=True)
        code = e.exit_code
    except typer.Exit as e:
        code = e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted: finished stages are kept; re-run the same command to resume", err=True)
        code = 130
    except ClickException as e:  # usage errors (exit 2): one line, like every other failure
        msg = " ".join(e.format_message().split()).rstrip(".")
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `cahp-edge`: help (rich prints it itself)
            if msg:
                e.show()
        else:
            where = ctx.command_path if ctx is not None else "cahp-edge"
            typer.echo(f"error: {msg}. Fix: see `{where} --help`", err=True)
        code = e.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main()
