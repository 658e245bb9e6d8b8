"""Progress when stderr is not a terminal (CI, nohup, tee): plain lines at the start, at most one per
interval while a step runs (with an ETA), and one at the end; nothing with --quiet."""

from __future__ import annotations

from cahp_edge.cli.progress import Progress


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_are_throttled_with_eta(capsys):
    clock = _Clock()
    p = Progress(quiet=False, every_s=15.0, clock=clock, terminal=False)
    for step in range(0, 11):  # 10 steps of 4 s each
        p.update("prune: knee sweep", step, 10)
        clock.t += 4.0
    p.update("prune: knee sweep", 10, 10)  # the end twice: printed once
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "prune: knee sweep 0/10 (0%), 0 s elapsed"
    assert lines[1] == "prune: knee sweep 4/10 (40%), 16 s elapsed, ~24 s left"
    assert lines[-1] == "prune: knee sweep 10/10 (100%), 40 s elapsed"
    assert len(lines) == 4  # start, 16 s, 32 s, end


def test_extra_text_and_quiet(capsys):
    clock = _Clock()
    Progress(quiet=False, clock=clock, terminal=False).update("finetune", 3, 30, "loss 0.412")
    assert capsys.readouterr().err == "finetune 3/30 (10%), 0 s elapsed, loss 0.412\n"  # no ETA from 0 s
    Progress(quiet=True, clock=clock, terminal=False).update("finetune", 3, 30)
    assert capsys.readouterr().err == ""


def test_a_signal_inside_the_import_machinery_is_raised_at_the_next_event():
    """CPython swallows (and prints) an exception raised in a module lock's weakref callback: the build's
    SIGTERM/SIGINT handler defers there and raises at the next stage or progress event instead."""
    import signal
    from types import SimpleNamespace

    import pytest

    from cahp_edge.cli.build import _interruptible, _Render

    r = _Render(quiet=True)
    in_import = SimpleNamespace(f_code=SimpleNamespace(co_filename="<frozen importlib._bootstrap>"))
    elsewhere = SimpleNamespace(f_code=SimpleNamespace(co_filename="/x/cahp_edge/build/stages.py"))
    with pytest.raises(KeyboardInterrupt), _interruptible(r):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, in_import)  # deferred, not raised
        assert r.pending == [signal.SIGTERM]
        r.progress("prune", 1, 2)  # the next event raises
    with pytest.raises(KeyboardInterrupt), _interruptible(_Render(quiet=True)):
        signal.getsignal(signal.SIGINT)(signal.SIGINT, elsewhere)  # anywhere else: at once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
