"""One run of a command under a pseudo-terminal, read and reaped without blocking the gevent hub.

Why not ptyprocess's own ``read``/``wait``/``terminate``/``close``: they block (``os.read`` on a
blocking fd, ``waitpid(pid, 0)``, ``time.sleep``), and one blocked call stalls every client of the
server. We use ptyprocess only to fork and exec under a PTY; then:

- reading: the master fd is made non-blocking and a reader greenlet waits on it with a libev
  io watcher (``gevent.socket.wait``), so a quiet agent costs nothing;
- reaping: a libev child watcher is started right after the fork, before the hub can run, so
  the exit status can never be missed. (gevent's libev reaps *every* child with
  ``waitpid(-1)`` once any child watcher exists, so a plain ``os.waitpid`` would find nothing.
  That includes the orphans the server adopts as subreaper: they are reaped, their statuses
  dropped, and a watcher's status is never taken; see ``containment/subreaper.py``.)
- end of output: Linux answers EIO on the master once every holder of the slave side is gone;
  that is taken as EOF, after everything before it has been read. If the child exits while an
  orphaned grandchild keeps the slave open, output is drained until it goes quiet for
  ``drain_s`` (or for at most ``DRAIN_MAX_S``: a leftover may never go quiet) and the run ends
  anyway.
- which processes are the run's, and ending them, is the run's
  :class:`~supervisor.containment.scope.RunScope`: its cgroup, the tree below the child (the
  server being their subreaper), or the child's process group. Stopping is SIGTERM to all of
  them, SIGKILL to what is left when the grace period is up. When the child exits by itself,
  its leftovers are ended too, or counted and kept (the ``leftovers`` setting), before the run
  is reported over, so that a next run never overlaps what the last one left.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import signal
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.event
import gevent.socket
from gevent.hub import get_hub
from gevent.socket import wait as wait_on_watcher
from ptyprocess import PtyProcess

from .containment import procfs
from .containment.scope import GroupScope, RunScope, Snapshot
from .exceptions import ExecutableNotFound, InvalidCommand, InvalidCwd, SpawnError

log = logging.getLogger(__name__)

READ_SIZE = 65536
#: How long a read waits before checking whether the child has exited behind our back (only
#: matters when an orphan keeps the PTY open after the child died; the exit also wakes it).
POLL_EXIT_S = 1.0
#: Longest a waiter on the child's exit trusts its event before looking at the state itself.
WAKEUP_CHECK_S = 0.25
#: Longest the output of a run whose child has exited is drained while leftovers keep writing.
DRAIN_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a run ended: ``exit_code`` when it exited, ``signal`` (e.g. ``"SIGKILL"``) when killed."""

    exit_code: int | None
    signal: str | None

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"SIG{-code}"
            return cls(None, name)
        return cls(code, None)

    @property
    def success(self) -> bool:
        return self.exit_code == 0


class _PtyChild(PtyProcess):  # type: ignore[misc]  # ptyprocess is untyped
    """ptyprocess's spawn, remembering the child it forked even when exec then fails.

    ``PtyProcess.spawn`` builds ``cls(pid, fd)`` before it learns that exec failed, and then
    raises without giving the pid back: the child would stay a zombie and the master fd open.
    """

    last: _PtyChild | None = None

    def __init__(self, pid: int, fd: int) -> None:
        super().__init__(pid, fd)
        self.closed = True  # never let ptyprocess's close() (it sleeps and waitpid()s) run
        _PtyChild.last = self

    def abandon(self) -> None:
        """Clean up after a failed exec: the child has already called ``_exit``."""
        try:
            self.fileobj.close()
        finally:
            try:
                os.waitpid(self.pid, 0)  # returns at once: the child is exiting
            except ChildProcessError:
                pass


#: The umask agents start with; None: the server's own. ``serve`` runs with a private one
#: (:func:`supervisor.datadir.private_umask`) and gives agents back the one it was started with.
_agent_umask: int | None = None


def set_agent_umask(mask: int | None) -> None:
    """Start every agent from now on with ``mask`` as its umask (None: the server's)."""
    global _agent_umask
    _agent_umask = mask


def _in_child(then: Callable[[], None] | None) -> Callable[[], None]:
    """What the forked child runs before exec: the agents' umask (the server changed its
    own), then ``then`` (the run's containment, if its mode needs a step there)."""
    mask = _agent_umask

    def setup() -> None:
        if mask is not None:
            os.umask(mask)
        if then is not None:
            then()

    return setup


class _Idle(Exception):
    """Raised by a wait that timed out: time to look at the child again."""


_IDLE = _Idle()


def resolve_command(argv: list[str], cwd: str | None, env: dict[str, str]) -> tuple[list[str], str]:
    """Check ``argv`` and ``cwd`` and return ``(argv with an absolute argv[0], cwd)``.

    Raises :class:`InvalidCommand`, :class:`InvalidCwd` or :class:`ExecutableNotFound` with a
    message a user can act on. Done before forking because a failure after the fork can only be
    reported as a dead child.
    """
    if not isinstance(argv, list) or not argv:
        raise InvalidCommand("command must be a non-empty list of strings (an argv)")
    if not all(isinstance(a, str) for a in argv):
        raise InvalidCommand("every item of command must be a string")
    if any("\x00" in a for a in argv):
        raise InvalidCommand("command items must not contain NUL characters")
    if not argv[0]:
        raise InvalidCommand("command[0] (the program) must not be empty")
    workdir = os.path.abspath(os.path.expanduser(cwd)) if cwd else os.getcwd()
    if not os.path.isdir(workdir):
        raise InvalidCwd(f"working directory {cwd!r} does not exist or is not a directory")
    if not os.access(workdir, os.X_OK):
        raise InvalidCwd(f"working directory {cwd!r} is not accessible")
    program = argv[0]
    if os.sep in program:
        path = os.path.join(workdir, os.path.expanduser(program))
        found = path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise ExecutableNotFound(
            f"executable {program!r} not found"
            + ("" if os.sep in program else " on PATH")
            + " or not executable"
        )
    return [os.path.abspath(found), *argv[1:]], workdir


class AgentProcess:
    """A command running under a PTY, from fork to reaped exit.

    ``on_output(data)`` gets every chunk of raw output bytes, and ``on_exit(status)`` is called
    once, after the last output and after the master fd is closed. Both run in the reader
    greenlet and must not block. Methods are to be called from greenlets of the same hub.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        cols: int = 120,
        rows: int = 40,
        on_output: Callable[[bytes], None],
        on_exit: Callable[[ExitStatus], None],
        drain_s: float = 0.5,
        scope: RunScope | None = None,
    ) -> None:
        self.scope = scope if scope is not None else _own_group_scope()
        self.env = {**(os.environ if env is None else env), **self.scope.env()}
        self.argv, self.cwd = resolve_command(argv, cwd, self.env)
        self.cols, self.rows = cols, rows
        self._on_output = on_output
        self._on_exit = on_exit
        self._drain_s = drain_s
        self.pid: int | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.status: ExitStatus | None = None
        self._fd: int | None = None
        self._pty: _PtyChild | None = None
        self._child_status: int | None = None
        self._child_watcher: object | None = None
        self._leader_exited = gevent.event.Event()
        self._waiting_for_output = False
        self._done = gevent.event.Event()
        self._reader: gevent.Greenlet[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Fork and exec; returns once the program runs. Raises :class:`SpawnError` if exec fails.

        Blocks the hub only for the fork and exec themselves (ptyprocess waits on a pipe that
        exec closes): milliseconds.
        """
        # libev's SIGCHLD handler must be in place before the fork: a child that exits before
        # it is installed is never reported (gevent.subprocess does the same).
        get_hub().loop.install_sigchld()
        _PtyChild.last = None
        try:
            pty = _PtyChild.spawn(
                self.argv, cwd=self.cwd, env=self.env, dimensions=(self.rows, self.cols),
                preexec_fn=_in_child(self.scope.preexec()),
            )
        except Exception as exc:  # ptyprocess re-raises the child's exec error under its own name
            failed, _PtyChild.last = _PtyChild.last, None
            if failed is not None:
                failed.abandon()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SpawnError(f"could not start {self.argv[0]!r}: {reason}") from exc
        _PtyChild.last = None
        # Start the child watcher before anything can yield to the hub: libev reaps all children,
        # so a status that arrives without a watcher is lost.
        watcher = get_hub().loop.child(pty.pid, False)
        watcher.start(self._child_exited, watcher)
        self._child_watcher = watcher  # held so the started watcher lives as long as the run
        self._pty = pty
        self.pid = pty.pid
        self._fd = pty.fd
        self.started_at = time.time()
        self.scope.attach(pty.pid)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self._reader = gevent.spawn(self._read_loop)

    def _child_exited(self, watcher: object) -> None:
        # Runs in the hub: record, wake waiters, nothing that can block.
        self._child_status = watcher.rstatus  # type: ignore[attr-defined]
        watcher.stop()  # type: ignore[attr-defined]
        self._leader_exited.set()
        # A leftover may hold the PTY open: start draining now rather than at the next poll.
        get_hub().loop.run_callback(self._wake_reader)

    def _wake_reader(self) -> None:
        # A hub callback: the reader is suspended, and if it is in its wait for output (and only
        # then), interrupting that wait is the same as its timeout.
        reader = self._reader
        if self._waiting_for_output and reader is not None and not reader.dead:
            reader.throw(_IDLE)

    def _read_loop(self) -> None:
        fd = self._fd
        assert fd is not None
        io = get_hub().loop.io(fd, 1)
        quiet_since: float | None = None
        draining_since: float | None = None
        try:
            while True:
                if draining_since is None and self._leader_exited.is_set():
                    draining_since = time.monotonic()
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    if self._leader_exited.is_set():
                        # The child is gone but something still holds the PTY: drain until quiet.
                        now = time.monotonic()
                        quiet_since = quiet_since or now
                        assert draining_since is not None
                        remaining = min(self._drain_s - (now - quiet_since),
                                        DRAIN_MAX_S - (now - draining_since))
                        if remaining <= 0:
                            break
                        timeout = remaining
                    else:
                        timeout = POLL_EXIT_S
                    try:
                        self._waiting_for_output = True
                        wait_on_watcher(io, timeout=timeout, timeout_exc=_IDLE)
                    except _Idle:
                        pass
                    finally:
                        self._waiting_for_output = False
                    continue
                except OSError as exc:
                    if exc.errno == errno.EIO:  # Linux: every holder of the slave side is gone
                        break
                    raise
                if not data:  # BSD-style EOF
                    break
                quiet_since = None
                self._on_output(data)
                if draining_since is not None and time.monotonic() - draining_since > DRAIN_MAX_S:
                    break  # the child is gone and a leftover writes on and on
                # An agent that prints flat out never lets the read fail with EAGAIN: yield after
                # each chunk, or the streams (and every other request) would starve.
                gevent.sleep(0)
        except Exception:  # noqa: BLE001 - a reader bug must still end the run cleanly
            log.exception("reading the PTY of pid %s failed", self.pid)
        finally:
            io.close()
            self._close_fd()
            # The PTY can close before the child is reaped. Re-check the status itself on a short
            # interval rather than trust one wake-up: with several greenlets waiting on the same
            # event, some with timeouts, a stop was seen to miss it now and then.
            while self._child_status is None:
                self._leader_exited.wait(WAKEUP_CHECK_S)
            assert self._child_status is not None
            self.status = ExitStatus.from_wait_status(self._child_status)
            self.ended_at = time.time()
            try:
                # Orphans left in the group lose their terminal now, as when a terminal window
                # closes; what survives that is ended, or counted and kept (the leftovers).
                self.scope.settle(lambda: self._signal_group(signal.SIGHUP))
            except Exception:  # noqa: BLE001 - the run must still end
                log.exception("ending the leftovers of pid %s failed", self.pid)
            try:
                self._on_exit(self.status)
            finally:
                self._done.set()

    def _close_fd(self) -> None:
        if self._fd is not None:
            pty, self._fd = self._pty, None
            assert pty is not None
            pty.fileobj.close()

    # -- control ---------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True until the run has ended (child reaped and output drained)."""
        return self.pid is not None and not self._done.is_set()

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Block the calling greenlet until the run has ended; None if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.status is None or not self._done.is_set():
            remaining = WAKEUP_CHECK_S if deadline is None else min(WAKEUP_CHECK_S, deadline - time.monotonic())
            if remaining <= 0:
                break
            self._done.wait(remaining)
        return self.status if self._done.is_set() else None

    def write(self, data: bytes) -> None:
        """Send ``data`` to the agent's terminal, as if typed. Blocks this greenlet (not the hub)
        while the terminal's input buffer is full. Raises ``OSError`` if the run has ended."""
        view = memoryview(data)
        while view:
            fd = self._fd
            if fd is None:
                raise OSError(errno.EIO, "the agent's terminal is closed")
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                gevent.socket.wait_write(fd, timeout=5.0)
                continue
            view = view[written:]

    def reply(self, data: bytes) -> None:
        """Answer a terminal query without waiting: if the terminal's input is full the answer is
        dropped (a lost reply, never a lost line, and the reader greenlet must not block)."""
        if self._fd is not None:
            try:
                os.write(self._fd, data)
            except OSError:
                pass

    def echo_enabled(self) -> bool:
        """Whether the terminal echoes input back (its ECHO flag; a full-screen program clears it)."""
        if self._fd is None:
            return False
        try:
            return bool(termios.tcgetattr(self._fd)[3] & termios.ECHO)
        except termios.error:
            return False

    def resize(self, cols: int, rows: int) -> None:
        """Change the terminal size; the kernel sends SIGWINCH to the foreground group."""
        self.cols, self.rows = cols, rows
        if self._pty is not None and self._fd is not None:
            self._pty.setwinsize(rows, cols)

    def send_signal(self, sig: int) -> bool:
        """Send ``sig`` to the agent's whole process group; False if nothing was there to get it."""
        return self._signal_group(sig)

    def _signal_group(self, sig: int) -> bool:
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def stop(self, grace: float) -> ExitStatus | None:
        """SIGTERM every process of the run; SIGKILL what is left after ``grace`` seconds.

        Blocks the calling greenlet (never the hub) until the run has ended; returns its status.
        """
        if self.pid is None:
            return None
        self.scope.end(grace)
        return self.wait()


def _own_group_scope() -> RunScope:
    """For a process made without a containment: its process group, as stop always did."""
    return GroupScope(f"local:{os.getpid()}:{os.urandom(4).hex()}", lambda: Snapshot(list(procfs.scan())))


def default_env(extra: dict[str, str] | None = None, cols: int = 120, rows: int = 40) -> dict[str, str]:
    """The environment an agent gets: ours, a colour terminal type, the window size, ``extra``."""
    env = dict(os.environ)
    env.setdefault("TERM", "xterm-256color")
    if env.get("TERM") in ("", "dumb"):
        env["TERM"] = "xterm-256color"
    env["COLUMNS"], env["LINES"] = str(cols), str(rows)
    env.pop("AGENT_SUPERVISOR_TOKEN", None)  # the server's secret is not the agent's business
    if extra:
        env.update(extra)
    return env

