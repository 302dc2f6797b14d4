"""One run under a real PTY (supervisor/process.py), without the agent around it.

In-process with gevent: waits let the hub run (``gwait``), so the reader greenlet and the child
watcher do their work meanwhile. The autouse leak check proves every child was reaped.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import gevent
import pytest

from supervisor.exceptions import ExecutableNotFound, InvalidCommand, InvalidCwd, SpawnError
from supervisor.process import AgentProcess, ExitStatus, default_env, resolve_command

from support.processes import alive
from support.waiting import gwait

PY = sys.executable


class Run:
    """An AgentProcess with its output and exit status collected."""

    def __init__(self, argv: list[str], **kw: object) -> None:
        self.output = bytearray()
        self.exits: list[ExitStatus] = []
        self.process = AgentProcess(argv, on_output=self.output.extend, on_exit=self.exits.append,
                                    env=default_env(), **kw)  # type: ignore[arg-type]
        self.process.start()

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def finished(self, timeout: float = 10.0) -> ExitStatus:
        status = self.process.wait(timeout)
        assert status is not None, "the run did not end"
        assert self.exits == [status], "on_exit once, with the same status"
        return status


def test_output_then_exit_code_once() -> None:
    """Every byte printed arrives before on_exit, which is called once with the exit code."""
    run = Run([PY, "-c", "import sys\nfor i in range(2000): print('line', i)\nsys.exit(3)"])
    status = run.finished()
    assert status == ExitStatus(3, None) and not status.success
    assert run.text().replace("\r\n", "\n").splitlines() == [f"line {i}" for i in range(2000)]
    assert not run.process.alive and run.process.ended_at is not None


def test_killed_by_a_signal() -> None:
    """A run ended by a signal reports its name and no exit code."""
    run = Run(["sleep", "30"])
    gwait(lambda: run.process.pid, 5)
    assert run.process.pid is not None
    os.kill(run.process.pid, signal.SIGKILL)
    assert run.finished() == ExitStatus(None, "SIGKILL")


def test_stop_escalates_to_sigkill_for_the_whole_group(tmp_path: Path) -> None:
    """stop(grace) sends SIGTERM to the group, then SIGKILL once the grace is up, so a
    grandchild that ignores SIGTERM dies too; it takes about the grace, not more."""
    pidfile = tmp_path / "grandchild"
    code = f"""
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    open({str(pidfile)!r}, "w").write(str(os.getpid()))
time.sleep(60)
"""
    run = Run([PY, "-c", code])
    gwait(lambda: pidfile.exists() and pidfile.read_text(), 10, "the grandchild")
    grandchild = int(pidfile.read_text())
    started = time.monotonic()
    status = run.process.stop(0.5)
    assert 0.4 < time.monotonic() - started < 4
    assert status == ExitStatus(None, "SIGKILL") and run.exits == [status]
    gwait(lambda: not alive(grandchild), 5, "the grandchild to die")


def test_write_reaches_the_program_and_echo_is_reported() -> None:
    """Input written to the terminal reaches the program; cat's terminal echoes, a raw one does not."""
    run = Run(["cat"])
    assert run.process.echo_enabled()
    run.process.write(b"hello\n")
    gwait(lambda: run.text().count("hello") == 2, 5, "the echo and cat's copy")
    run.process.stop(1.0)
    run.finished()
    with pytest.raises(OSError):
        run.process.write(b"too late\n")
    run.process.reply(b"\x1b[1;1R")  # dropped without error once the terminal is closed
    assert not run.process.echo_enabled()


def test_resize_is_seen_by_the_program() -> None:
    """resize() changes the size the program reads from its terminal."""
    run = Run(["sh", "-c", "stty size; read x; stty size"], cols=100, rows=30)
    gwait(lambda: "30 100" in run.text(), 5)
    run.process.resize(132, 43)
    assert (run.process.cols, run.process.rows) == (132, 43)
    run.process.write(b"\n")
    run.finished()
    assert run.text().split()[-2:] == ["43", "132"]


def test_an_orphan_holding_the_terminal_does_not_keep_the_run_alive() -> None:
    """The child exits while a background grandchild keeps the PTY open: the run still ends,
    after its output went quiet for drain_s, and the orphan gets SIGHUP."""
    run = Run(["sh", "-c", "sleep 30 & echo started"], drain_s=0.2)
    started = time.monotonic()
    assert run.finished(10) == ExitStatus(0, None)
    assert "started" in run.text() and time.monotonic() - started < 5


@pytest.mark.slow
def test_the_reader_never_stalls_the_hub() -> None:
    """While a program prints flat out, other greenlets keep running (the reader yields)."""
    ticks: list[float] = []

    def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    beat = gevent.spawn(ticker)
    try:
        run = Run([PY, "-c", "import sys\nfor _ in range(200000): sys.stdout.write('x' * 100 + '\\n')"])
        run.finished(30)
    finally:
        beat.kill()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(run.output) > 20_000_000 and max(gaps) < 0.5


@pytest.mark.parametrize(("argv", "cwd", "error"), [
    ([], None, InvalidCommand),
    ([""], None, InvalidCommand),
    (["a\x00b"], None, InvalidCommand),
    (["no-such-program-xyz"], None, ExecutableNotFound),
    (["./not-here"], None, ExecutableNotFound),
    (["true"], "/no/such/dir", InvalidCwd),
])
def test_bad_commands_are_refused_before_the_fork(argv: list[str], cwd: str | None, error: type) -> None:
    """What cannot be started is an error with a message, before anything is forked."""
    with pytest.raises(error) as info:
        resolve_command(argv, cwd, default_env())
    assert str(info.value)


def test_a_file_that_cannot_be_executed_is_a_spawn_error(tmp_path: Path) -> None:
    """exec failing after the fork is a SpawnError, and the forked child is reaped."""
    script = tmp_path / "garbage"
    script.write_bytes(b"\x7fELF garbage")
    script.chmod(0o755)
    with pytest.raises(SpawnError, match="could not start"):
        Run([str(script)])
