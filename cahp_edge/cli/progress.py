"""Progress of long steps on stderr: a live bar with ETA in a terminal, plain lines when piped.

    progress = Progress(quiet)
    progress.update("prune: knee sweep", 3, 14)      # a bar, or "prune: knee sweep 3/14 (21%), ..."
    progress.stop()                                   # before printing a stage line

Logs, CI and `nohup` get one plain line when a step starts, at most one every ``every_s`` seconds
while it runs (with elapsed time and an ETA), and one when it ends, so a long step never looks hung.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import typer


class Progress:
    def __init__(self, quiet: bool, every_s: float = 15.0, clock: Callable[[], float] = time.monotonic,
                 terminal: bool | None = None) -> None:
        self.quiet, self.every_s, self.clock = quiet, every_s, clock
        self.terminal = terminal
        self.bar = None
        self.tasks: dict[str, int] = {}
        self.started: dict[str, float] = {}  # plain mode: when each task began
        self.printed: dict[str, float] = {}  # plain mode: when its last line was printed

    def _is_terminal(self) -> bool:
        if self.terminal is None:
            from rich.console import Console

            self.terminal = Console(stderr=True).is_terminal
        return self.terminal

    def update(self, task: str, done: int, total: int | None, extra: str = "") -> None:
        if self.quiet:
            return
        if self._is_terminal():
            self._bar(task, done, total, extra)
        else:
            self._line(task, done, total, extra)

    def _bar(self, task: str, done: int, total: int | None, extra: str) -> None:
        if self.bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                           transient=True, console=Console(stderr=True))
            self.bar.start()
        if task not in self.tasks:
            self.tasks[task] = self.bar.add_task(task, total=total, extra=extra)
        self.bar.update(self.tasks[task], completed=done, total=total, extra=extra)

    def _line(self, task: str, done: int, total: int | None, extra: str) -> None:
        now = self.clock()
        start = self.started.setdefault(task, now)
        finished = total is not None and done >= total
        last = self.printed.get(task)
        if last is not None and not finished and now - last < self.every_s:
            return
        if finished and self.printed.get(task) == -1.0:  # the end was printed already
            return
        elapsed = now - start
        parts = [f"{task} {done}/{total}" if total else f"{task} {done}"]
        if total:
            parts[0] += f" ({100 * done / total:.0f}%)"
        parts.append(f"{elapsed:.0f} s elapsed")
        if total and 0 < done < total and elapsed > 0:
            parts.append(f"~{elapsed / done * (total - done):.0f} s left")
        if extra:
            parts.append(extra)
        typer.echo(", ".join(parts), err=True)
        self.printed[task] = -1.0 if finished else now

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar, self.tasks = None, {}
