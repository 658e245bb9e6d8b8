"""The Typer app every command module adds itself to, and the two places output reaches the user.

``emit`` writes results to stdout (JSON with ``--json``); ``note`` writes progress and summaries to stderr.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="cahp-edge",
    help="Prune attention heads with CAHP, reshape, export, quantize, validate and package for edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# options several commands share, declared once
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary lines on stderr.")]
TrustPickle = Annotated[
    bool, typer.Option("--trust-pickle", help="Allow pytorch_model.bin (unpickling runs code from the file).")
]

_STATE = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _STATE["debug"] = debug or os.environ.get("CAHP_DEBUG") == "1"


# bidirectional-text controls: they reorder what a terminal shows (a name could display as another)
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)}


def terminal_safe(text: str, keep_newlines: bool = True) -> str:
    """``text`` with control characters shown as escapes (``\x1b``), so names that come from input
    (archive members, file names, labels) cannot repaint the terminal or fake a line such as "OK"."""
    out = []
    for ch in text:
        c = ord(ch)
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif c < 0x20 or 0x7F <= c < 0xA0 or ch in _BIDI:
            out.append(f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
        else:
            out.append(ch)
    return "".join(out)


def interrupted(e: BaseException | None) -> bool:
    """A KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one), possibly wrapped by the code it landed in."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def emit(data: Any, as_json: bool, human: str | None = None) -> None:
    """The one place results reach stdout (JSON escapes control characters itself)."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif human is not None:
        typer.echo(terminal_safe(human))


def note(msg: str, quiet: bool = False) -> None:
    """Progress / summary lines go to stderr so stdout stays machine-readable."""
    if not quiet:
        typer.echo(terminal_safe(msg), err=True)


# True when main() runs as the `cahp-edge` program (argv from the command line), False for a Python
# caller of main(argv): only the program may end the interpreter abruptly (see cli.build._interruptible)
OWN_PROCESS = False
