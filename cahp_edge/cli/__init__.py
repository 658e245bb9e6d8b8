"""The `cahp-edge` command line. Parses, prints, maps errors to exit codes; the work lives in stages.

Exit codes: 0 success, 1 runtime error (CahpError), 2 usage error, 130 interrupted.
Heavy imports (torch, transformers, onnxruntime) happen inside commands so `--help` is instant.
Commands are registered by the explicit list below: a command module that fails to import fails
the program loudly instead of silently dropping its commands.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from cahp_edge.cli import app as _app
from cahp_edge.cli.app import interrupted, terminal_safe
from cahp_edge.errors import CahpError

# one module per area, each adds its commands to `app.app`
COMMAND_MODULES = ("model", "prune", "export", "targets", "build", "train", "tools")
# how `cahp-edge --help` lists them: the main job first, then the stages in pipeline order
PANELS = (
    ("Main job", ("build", "demo", "verify")),
    ("1. Fine-tune", ("finetune",)),
    ("2. Prune", ("prune", "compare", "reshape", "recover", "inspect")),
    ("3. Export and quantize", ("export", "optimize", "quantize")),
    ("4. Validate on a target", ("validate", "targets")),
    ("Tools", ("keygen", "optimum-env")),
)


def register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"cahp_edge.cli.{name}")
    order = [c for _, cmds in PANELS for c in cmds]
    panel = {c: title for title, cmds in PANELS for c in cmds}
    infos = _app.app.registered_commands + _app.app.registered_groups
    for info in infos:
        info.rich_help_panel = panel[_name(info)]  # KeyError: a new command needs its place in PANELS
    _app.app.registered_commands.sort(key=lambda i: order.index(_name(i)))


def _name(info) -> str:
    if info.name:
        return info.name
    return info.callback.__name__.replace("_", "-")


def command():
    """The click command behind `cahp-edge`, with help that reads as words: flags show no ``<bool>``
    type, arguments show their name in capitals (``MODEL``) instead of ``{model}``."""
    import typer.main

    register_commands()
    group = typer.main.get_command(_app.app)
    stack = [group]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for p in cmd.params:
            _words(p)
        cmd.get_help_option = _help_option_without_type(cmd.get_help_option)  # --help is made on demand
    return group


def _words(p) -> None:
    if getattr(p, "is_flag", False):
        p.metavar = ""
    elif (getattr(p, "min", None) is not None or getattr(p, "max", None) is not None) and p.metavar is None:
        # "<int range> [x>=1]" reads as code: show the type, and the range in words in the help text
        kind = getattr(getattr(p, "type_descriptor", None), "annotation", None)
        p.metavar = "<int>" if kind is int else "<float>"
        p._get_number_range_help_str = lambda: None
        bound = _bound_text(p)
        if bound and p.help and bound not in p.help:
            p.help = f"{p.help.rstrip('.')} ({bound})."
    elif p.param_type_name == "argument":
        if p.metavar is None:
            p.metavar = p.name.upper()
        # the usage line says MODEL (and [MODEL] when optional), not typer's {MODEL}
        p.get_usage_pieces = lambda ctx, p=p: [_usage_piece(p)]


def _bound_text(t) -> str:
    lo, hi = t.min, t.max
    lo_op = ">" if getattr(t, "min_open", False) else ">="
    hi_op = "<" if getattr(t, "max_open", False) else "<="
    if lo is not None and hi is not None:
        return f"{lo_op} {lo}, {hi_op} {hi}"
    return f"{lo_op} {lo}" if lo is not None else (f"{hi_op} {hi}" if hi is not None else "")


def _usage_piece(p) -> str:
    name = p.metavar if p.required else f"[{p.metavar}]"
    return name + ("..." if p.nargs != 1 else "")


def _help_option_without_type(make):
    def get_help_option(ctx):
        opt = make(ctx)
        if opt is not None:
            _words(opt)
        return opt

    return get_help_option


def main(argv: list[str] | None = None) -> int:
    _app.OWN_PROCESS = argv is None
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
    group = command()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("CAHP_DEBUG") == "1"
    if not debug:
        import warnings

        # torch/transformers/onnx warnings on stderr break the one-line contract; --debug shows them
        warnings.filterwarnings("ignore")
    try:
        rv = group(args=args, prog_name="cahp-edge", standalone_mode=False)
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
        typer.echo(terminal_safe(f"error: {e.line()}", keep_newlines=False), err=True)
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
            line = f"error: {msg}. Fix: see `{where} --help`"
            typer.echo(terminal_safe(line, keep_newlines=False), err=True)
        code = e.exit_code
    except OSError as e:  # a fault no stage mapped (disk full in a temporary folder, a name too long, ...)
        if debug:
            raise
        from cahp_edge.fsutil import os_error_line

        typer.echo(terminal_safe(f"error: {os_error_line(e).line()}", keep_newlines=False), err=True)
        code = 1
    except RecursionError:  # json / toml parsers on absurdly nested input
        if debug:
            raise
        typer.echo("error: an input file is nested too deeply to read: a JSON or TOML file with thousands "
                   "of nested levels. Fix: check the files you passed (config.json, plan, build.toml, data)",
                   err=True)
        code = 1
    except Exception as e:
        # a Ctrl-C / SIGTERM that lands inside an import or a class body comes wrapped (e.g. RuntimeError
        # "Error calling __set_name__"): still an interruption, not a crash
        if debug or not interrupted(e):
            raise
        typer.echo("interrupted: finished stages are kept; re-run the same command to resume", err=True)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
