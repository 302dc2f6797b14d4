"""An agent's virtual screen on the gevent hub: started by the ``screen`` setting, kept by a
worker process (or fed here in bounded slices), settled into ``screen`` events, watched by the
screen streams.

One :class:`LiveScreen` per agent, for all its runs: :meth:`~LiveScreen.start_run` gives each
run a screen of its own (``on``), none (``off``), or one from the moment the program enters
the alternate screen (``auto``: until then the output costs one ``bytes`` search per chunk,
:class:`~supervisor.screen.AlternateScreenDetector`). The screen of the last run stays readable
after it ended, until the next run starts.

Where the emulator runs. By default (``worker=True``, the ``screen_worker`` setting) in a
process of its own per screen (:mod:`supervisor.screen.worker`, spawned when the screen starts,
ended with the run): :meth:`feed` only writes the bytes into its pipe
(:class:`~supervisor.screen.link.WorkerLink`, never blocking the hub), the worker sends back
the rows that changed at most every 20 ms, and :attr:`current` is a
:class:`~supervisor.screen.mirror.ScreenMirror` built from them, read as an emulator is. Its
terminal-query replies come back from the worker (``on_reply``). Whether the output is a
full-screen program's is known here without waiting for the worker: the switches to and from
the alternate screen are found in the bytes (:meth:`pieces`).

- Backpressure: at most :data:`QUEUE_MAX` bytes wait for the worker's pipe (on top of the
  pipe's own 64 KB). Past that the reader greenlet waits until the worker has caught up: a
  program that draws faster than its screen can follow is slowed down by its terminal, as by
  a real one, and nothing is dropped or grows.
- A worker that dies (a crash, a kill) or hangs (the queue does not drain for :data:`HANG_S`;
  it is killed) is replaced, up to :data:`MAX_RESTARTS` times a run: the new one starts from
  the screen the mirror shows (:func:`~supervisor.screen.mirror.seed`), so the screen stays as
  it was, and what the program drew meanwhile (in the pipe, unsent) shows at its next redraw.
  ``on_failure(message, data)`` tells the user (the agent emits an ``error`` event). After the
  last restart the screen is off for the rest of the run, and the output is read as lines.

In this process (``worker=False``, for the emulator's own tests): feeding costs about 150 µs per KB of full-screen output (docs/SCREEN.md), so :meth:`feed` cuts
a chunk into slices of :data:`SLICE_BYTES` and, once it has held the hub for :data:`HOLD_S`,
waits for the hub to poll for I/O once before the next slice: the hub is never held much
longer than that, and every other agent's output and every stream's flush get their turn. (A
turn of the hub costs some 20-40 µs, so yielding after every small slice would cost a TUI at
1 MB/s several percent of a core more; yielding by the clock costs only what it must.) It is called from the run's reader greenlet, so a program
that draws faster than the screen can follow is slowed down by its own terminal, as a real one
would (the reader reads nothing more meanwhile), and nothing queues up.

Settling: once the screen has not changed for ``settle_s`` (or has kept changing for
``settle_max_s``, :data:`SETTLE_MAX_S` by default), and at the end of the run, if its text changed since the last time,
``on_settle(data, lines)`` is called with the ``screen`` event's data and the printed lines
(:func:`~supervisor.screen.text.printed_lines`) that were not on the last settled screen, for
the extractors (a line that only scrolled is not read again).

Watchers (the screen streams) are called with no arguments after each slice that changed the
screen, when a run gets or loses its screen, and on a resize; they must not block or raise.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from gevent.hub import get_hub

from supervisor.screen.detector import AlternateScreenDetector, alternate_switches, unfinished_switch
from supervisor.screen.emulator import ScreenLine, VirtualScreen
from supervisor.screen.link import WorkerLink
from supervisor.screen.mirror import ScreenMirror, seed
from supervisor.screen.text import printed_lines
from supervisor.terminal import QueryAnswerer

__all__ = ["HANG_S", "HOLD_S", "MAX_RESTARTS", "QUEUE_MAX", "SETTLE_MAX_S", "SLICE_BYTES", "LiveScreen",
           "Screen", "Settled"]

log = logging.getLogger(__name__)

#: Bytes fed to the emulator at a time (about 0.1 ms of work), and how long feeding may hold
#: the hub before it lets the hub run.
SLICE_BYTES = 512
HOLD_S = 0.0002
#: Bytes that may wait for a worker's pipe before the program's reader waits for the worker.
QUEUE_MAX = 256 << 10
#: A worker that takes none of them for this long hangs: it is killed and replaced.
HANG_S = 5.0
#: Worker restarts in one run before its screen is given up.
MAX_RESTARTS = 3
#: How long the end of a run waits for the worker to show all of its output.
FINISH_WAIT_S = 5.0
#: A screen that keeps changing (a spinner, a clock) is settled this often anyway.
SETTLE_MAX_S = 10.0

#: What :class:`LiveScreen` calls when the screen settled with new text: ``(data, lines)``, with
#: ``data`` the ``screen`` event's and ``lines`` the printed lines new since the last settle.
Settled = Callable[[dict[str, Any], list[ScreenLine]], None]
#: What :attr:`LiveScreen.current` is: the emulator (in this process) or a worker's mirror.
Screen = VirtualScreen | ScreenMirror


#: libev's lowest priority: of the watchers a loop iteration finds ready, this one runs last.
_LAST = -2


def _yield_to_io() -> None:
    """Let the hub poll for I/O and run everything that is ready, then come back: a zero timer
    of the lowest priority fires after the poll and after every other ready watcher
    (``gevent.sleep(0)`` is a callback, run before the next poll; a timer of the default
    priority would run before the I/O it found ready, libev invoking the newest first)."""
    hub = get_hub()
    timer = hub.loop.timer(0.0, priority=_LAST)
    try:
        hub.wait(timer)
    finally:
        timer.close()


class LiveScreen:
    """The virtual screen of one agent's runs; see the module docstring. Not thread-safe: all
    of it runs in greenlets of one hub."""

    def __init__(self, mode: str, on_settle: Settled, settle_s: float = 1.0,
                 settle_max_s: float = SETTLE_MAX_S, *, worker: bool = False,
                 on_reply: Callable[[bytes], None] | None = None,
                 on_failure: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.mode = mode
        self.worker = worker
        self._on_reply = on_reply
        self._on_failure = on_failure
        self._link: WorkerLink | None = None
        self._byte_alternate = False  # worker mode: the alternate screen's state, from the bytes
        self._switch_tail = b""  # the start of a switch sequence cut by the end of a chunk
        self._given_up = False  # the worker failed too often: no screen for the rest of the run
        self._ready = Event()  # set by each update (see wait_ready)
        #: Worker restarts, this run and in all (for the user and the metrics).
        self.restarts = 0
        self.restarts_total = 0
        self.settle_s = settle_s
        self.settle_max_s = settle_max_s
        self._on_settle = on_settle
        self.run = 0
        self.cols, self.rows = 80, 24
        # The current (or last) run's screen (see current).
        self._screen: Screen | None = None
        self._detector: AlternateScreenDetector | None = None
        self._watchers: set[Callable[[], None]] = set()
        self._timer: gevent.Greenlet[..., Any] | None = None
        self._changed_at = 0.0  # when the screen last changed (monotonic)
        self._dirty_since: float | None = None  # first change since the last settle
        self._settled_seq = -1
        self._settled_text: list[str] | None = None
        self._settled_lines: set[str] = set()
        self._answerer = QueryAnswerer()

    # -- what others read --------------------------------------------------------------------

    @property
    def current(self) -> Screen | None:
        """The current (or last) run's screen; None while it has none. A worker's mirror shows
        from the worker's first update on (what the program drew before the worker started
        is on it then), never as the blank screen it starts as."""
        screen = self._screen
        if isinstance(screen, ScreenMirror) and not screen.ready:
            return None
        return screen

    @property
    def alternate(self) -> bool:
        """Whether the screen shows the alternate screen (a full-screen program). With a worker,
        as of the bytes fed so far (its mirror is up to 20 ms behind)."""
        if self.worker:
            return self._byte_alternate and self._screen is not None
        return self._screen is not None and self._screen.alternate

    @property
    def worker_pid(self) -> int | None:
        """The pid of the run's screen worker, while it has one."""
        return self._link.pid if self._link is not None and self._link.alive else None

    @property
    def worker_queued(self) -> int:
        """Bytes waiting for the worker's pipe."""
        return self._link.queued if self._link is not None else 0

    def wait_ready(self, timeout: float) -> None:
        """Wait (this greenlet only, at most ``timeout``) while the run's screen is a worker's
        that has not sent its first update: the worker starts in some 80 ms, and a screen
        that exists is shown rather than denied."""
        screen = self._screen
        if isinstance(screen, ScreenMirror) and not screen.ready and self._link is not None:
            self._ready.clear()
            self._ready.wait(timeout)

    def pieces(self, data: bytes) -> list[tuple[bytes, bool]]:
        """``data`` cut where it enters or leaves the alternate screen, each piece with whether
        it is the output of a full-screen program (which the screen shows, and which is no
        lines). One piece, found with one ``bytes`` search, unless it switches. Call it before
        :meth:`feed`."""
        state = self.alternate
        if self.mode == "off" or self._given_up:
            return [(data, False)]
        if self.worker:
            return self._worker_pieces(data)
        switches = alternate_switches(data)
        if not switches:
            return [(data, state)]
        out: list[tuple[bytes, bool]] = []
        at = 0
        for offset, on in switches:
            if offset > at:
                out.append((data[at:offset], state))
                at = offset
            state = on
        out.append((data[at:], state))
        return out

    def _worker_pieces(self, data: bytes) -> list[tuple[bytes, bool]]:
        """:meth:`pieces` from the byte state: a switch cut between two chunks counts from the
        start of the second."""
        tail = self._switch_tail
        scan = tail + data if tail else data
        self._switch_tail = b""
        state = self._byte_alternate
        out: list[tuple[bytes, bool]] = []
        at = 0
        for offset, on in alternate_switches(scan):
            offset = max(offset - len(tail), 0)
            if offset > at:
                out.append((data[at:offset], state))
                at = offset
            state = on
        out.append((data[at:], state))
        cut = unfinished_switch(scan)
        if cut >= 0:
            self._switch_tail = scan[cut:]
        self._byte_alternate = state
        return out

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever the screen changes; returns the function that stops it."""
        self._watchers.add(callback)
        return lambda: self._watchers.discard(callback)

    # -- a run -------------------------------------------------------------------------------

    def start_run(self, run: int, cols: int, rows: int, mode: str | None = None) -> None:
        """A new run begins: a fresh screen (``on``), a detector (``auto``), or nothing."""
        self._cancel_timer()
        self._end_worker()
        if mode is not None:
            self.mode = mode
        self.run, self.cols, self.rows = run, cols, rows
        self._byte_alternate, self._switch_tail, self._given_up, self.restarts = False, b"", False, 0
        self._screen = None
        if self.mode == "on":
            self._open()
        self._detector = AlternateScreenDetector() if self.mode == "auto" else None
        self._dirty_since = None
        self._settled_seq = -1
        self._settled_text = None
        self._settled_lines = set()
        self._answerer = QueryAnswerer()
        self._notify()

    def answer(self, data: bytes) -> bytes:
        """The replies to the terminal queries in ``data``, output already fed to the screen
        (so a cursor-position report gives the cursor where the program put it)."""
        screen = self._screen
        if screen is None or self.worker:  # a worker answers them itself
            return b""
        cursor = screen.cursor
        return self._answerer.feed(data, (cursor.x, cursor.y), (screen.cols, screen.rows))

    def _open(self) -> None:
        """Start the run's screen: an emulator here, or a worker and its mirror."""
        if not self.worker:
            self._screen = VirtualScreen(self.cols, self.rows)
            return
        mirror = self._screen = ScreenMirror(self.cols, self.rows)
        if not self._start_worker(mirror):
            self._worker_died("could not be started")

    def _start_worker(self, mirror: ScreenMirror) -> bool:
        try:
            self._link = WorkerLink(mirror.cols, mirror.rows, mirror.gen, on_update=self._updated,
                                    on_reply=self._reply, on_death=self._worker_died)
        except OSError as exc:
            log.warning("starting a screen worker failed: %s", exc)
            self._link = None
            return False
        return True

    def _end_worker(self, wait: bool = False) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close(wait)

    def _updated(self, update: dict[str, Any]) -> None:
        mirror = self._screen
        if isinstance(mirror, ScreenMirror) and mirror.apply(update):
            self._ready.set()
            self._changed()

    def _reply(self, data: bytes) -> None:
        if self._on_reply is not None:
            self._on_reply(data)

    def _worker_died(self, reason: str) -> None:
        """The worker ended by itself (or was killed for hanging): start another from the
        screen as the mirror shows it, or give the screen up for the run."""
        self._link = None
        mirror = self._screen
        if not isinstance(mirror, ScreenMirror):
            return
        self.restarts += 1
        self.restarts_total += 1
        data: dict[str, Any] = {"code": "screen_worker_failed", "run": self.run, "restarts": self.restarts,
                                "reason": reason}
        if self.restarts <= MAX_RESTARTS and self._start_worker(mirror):
            assert self._link is not None
            self._link.feed(seed(mirror), False)
            message = (f"the screen's worker process {reason}; a new one took over from the screen as last shown"
                       " (what the program drew since shows at its next redraw)")
        else:
            data["screen_off"] = True
            self._given_up = True
            self._screen = None
            self._detector = None
            self._cancel_timer()
            message = (f"the screen's worker process {reason}, {self.restarts} times this run: the screen is off"
                       " for the rest of the run, and its output is read as lines")
        self._ready.set()
        log.warning("run %d: %s", self.run, message)
        if self._on_failure is not None:
            try:
                self._on_failure(message, data)
            except Exception:  # noqa: BLE001 - the user's notice must not stop the screen
                log.exception("reporting a screen worker's failure failed")
        self._notify()

    def feed(self, data: bytes, answer: bool = False) -> bytes:
        """The run's output, as read from the PTY; with ``answer``, the replies to the terminal
        queries in it (a full-screen program's: the screen knows its cursor), or with a worker
        b"" (they come to ``on_reply``). Yields to the hub between slices, or waits while the
        worker is behind; call it from the reader greenlet only (in order, one chunk after the
        other)."""
        screen = self._screen
        if screen is None:
            detector = self._detector
            if detector is None:
                return b""
            start = detector.feed(data)
            if start is None:
                return b""
            self._detector = None
            self._open()
            screen = self._screen
            self._notify()
            data = start
        if self.worker:
            self._feed_worker(data, answer)
            return b""
        assert isinstance(screen, VirtualScreen)
        self._feed_here(screen, data)
        return self.answer(data) if answer else b""

    def _feed_worker(self, data: bytes, answer: bool) -> None:
        link = self._link
        if link is None:
            return
        link.feed(data, answer)
        if link.queued > QUEUE_MAX and not link.wait_queued(QUEUE_MAX // 2, HANG_S) and link is self._link:
            log.warning("run %d: the screen worker took nothing for %g s: killed", self.run, HANG_S)
            link.kill()

    def _feed_here(self, screen: VirtualScreen, data: bytes) -> None:
        held_since = time.perf_counter()
        for at in range(0, len(data), SLICE_BYTES):
            if at and time.perf_counter() - held_since >= HOLD_S:
                _yield_to_io()
                if self._screen is not screen:  # a new run began meanwhile: this one is over
                    return
                held_since = time.perf_counter()
            before = screen.seq
            screen.feed(data[at:at + SLICE_BYTES])
            if screen.seq != before:
                self._changed()

    def resize(self, cols: int, rows: int) -> None:
        """The PTY's size changed (and so will the next run's, unless its spec says otherwise)."""
        self.cols, self.rows = cols, rows
        screen = self._screen
        if screen is not None:
            screen.resize(cols, rows)
            if isinstance(screen, ScreenMirror) and self._link is not None:
                self._link.resize(cols, rows, screen.gen)
            self._changed()

    def finish(self) -> None:
        """The run ended (its output is all fed): settle one last time."""
        self._cancel_timer()
        self._detector = None
        link = self._link
        if link is not None and not link.sync(FINISH_WAIT_S):
            log.warning("run %d: the screen worker did not show the end of the output within %g s",
                        self.run, FINISH_WAIT_S)
        self._end_worker(wait=True)
        if self._screen is not None:
            self._settle(final=True)

    # -- changes and settling ----------------------------------------------------------------

    def _changed(self) -> None:
        now = time.monotonic()
        self._changed_at = now
        if self._dirty_since is None:
            self._dirty_since = now
        if self._timer is None:
            self._timer = gevent.spawn_later(self.settle_s, self._check)
        self._notify()

    def _notify(self) -> None:
        for watcher in tuple(self._watchers):
            try:
                watcher()
            except Exception:  # noqa: BLE001 - a watcher's bug must not end the run
                log.exception("a screen watcher failed")

    def _check(self) -> None:
        """The settle timer: settled if quiet for ``settle_s`` (or busy for SETTLE_MAX_S), else
        wait for the rest."""
        self._timer = None
        now = time.monotonic()
        quiet_for = now - self._changed_at
        busy_for = now - (self._dirty_since if self._dirty_since is not None else now)
        if quiet_for >= self.settle_s * 0.99 or busy_for >= self.settle_max_s:
            self._settle(final=False)
        else:
            wait = min(self.settle_s - quiet_for, self.settle_max_s - busy_for)
            self._timer = gevent.spawn_later(max(wait, 0.001), self._check)

    def _settle(self, final: bool) -> None:
        screen = self._screen
        assert screen is not None
        self._dirty_since = None
        if screen.seq == self._settled_seq:
            return
        self._settled_seq = screen.seq
        snapshot = screen.snapshot()
        text: list[str] = snapshot["text"]
        previous = self._settled_text
        if text == previous:
            return  # only the cursor or colours moved: nothing new to read
        self._settled_text = text
        data: dict[str, Any] = {
            "run": self.run,
            "seq": snapshot["seq"],
            "cols": snapshot["cols"],
            "rows": snapshot["rows"],
            "cursor": snapshot["cursor"],
            "alternate": snapshot["alternate"],
            "text": text,
            "changed": [i for i, row in enumerate(text)
                        if previous is None or i >= len(previous) or previous[i] != row],
        }
        if final:
            data["final"] = True
        lines = printed_lines(screen)
        seen = self._settled_lines
        self._settled_lines = {line.text for line in lines}
        try:
            self._on_settle(data, [line for line in lines if line.text.strip() and line.text not in seen])
        except Exception:  # noqa: BLE001 - a settle that fails must not stop the screen
            log.exception("handling a settled screen failed")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
