"""An agent's virtual screen on the gevent hub: started by the ``screen`` setting, fed in bounded
slices, settled into ``screen`` events, watched by the screen streams.

One :class:`LiveScreen` per agent, for all its runs: :meth:`~LiveScreen.start_run` gives each
run a screen of its own (``on``), none (``off``), or one from the moment the program enters
the alternate screen (``auto``: until then the output costs one ``bytes`` search per chunk,
:class:`~supervisor.screen.AlternateScreenDetector`). The screen of the last run stays readable
after it ended, until the next run starts.

Feeding costs about 150 µs per KB of full-screen output (docs/SCREEN.md), so :meth:`feed` cuts
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
from gevent.hub import get_hub

from supervisor.screen.detector import AlternateScreenDetector, alternate_switches
from supervisor.screen.emulator import ScreenLine, VirtualScreen
from supervisor.screen.text import printed_lines
from supervisor.terminal import QueryAnswerer

__all__ = ["HOLD_S", "SETTLE_MAX_S", "SLICE_BYTES", "LiveScreen", "Settled"]

log = logging.getLogger(__name__)

#: Bytes fed to the emulator at a time (about 0.1 ms of work), and how long feeding may hold
#: the hub before it lets the hub run.
SLICE_BYTES = 512
HOLD_S = 0.0002
#: A screen that keeps changing (a spinner, a clock) is settled this often anyway.
SETTLE_MAX_S = 10.0

#: What :class:`LiveScreen` calls when the screen settled with new text: ``(data, lines)``, with
#: ``data`` the ``screen`` event's and ``lines`` the printed lines new since the last settle.
Settled = Callable[[dict[str, Any], list[ScreenLine]], None]


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
                 settle_max_s: float = SETTLE_MAX_S) -> None:
        self.mode = mode
        self.settle_s = settle_s
        self.settle_max_s = settle_max_s
        self._on_settle = on_settle
        self.run = 0
        self.cols, self.rows = 80, 24
        #: The current (or last) run's screen; None while it has none.
        self.current: VirtualScreen | None = None
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
    def alternate(self) -> bool:
        """Whether the screen shows the alternate screen (a full-screen program)."""
        return self.current is not None and self.current.alternate

    def pieces(self, data: bytes) -> list[tuple[bytes, bool]]:
        """``data`` cut where it enters or leaves the alternate screen, each piece with whether
        it is the output of a full-screen program (which the screen shows, and which is no
        lines). One piece, found with one ``bytes`` search, unless it switches. Call it before
        :meth:`feed`."""
        state = self.alternate
        if self.mode == "off":
            return [(data, False)]
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

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever the screen changes; returns the function that stops it."""
        self._watchers.add(callback)
        return lambda: self._watchers.discard(callback)

    # -- a run -------------------------------------------------------------------------------

    def start_run(self, run: int, cols: int, rows: int, mode: str | None = None) -> None:
        """A new run begins: a fresh screen (``on``), a detector (``auto``), or nothing."""
        self._cancel_timer()
        if mode is not None:
            self.mode = mode
        self.run, self.cols, self.rows = run, cols, rows
        self.current = VirtualScreen(cols, rows) if self.mode == "on" else None
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
        screen = self.current
        if screen is None:
            return b""
        cursor = screen.cursor
        return self._answerer.feed(data, (cursor.x, cursor.y), (screen.cols, screen.rows))

    def feed(self, data: bytes) -> None:
        """The run's output, as read from the PTY. Yields to the hub between slices; call it
        from the reader greenlet only (in order, one chunk after the other)."""
        screen = self.current
        if screen is None:
            detector = self._detector
            if detector is None:
                return
            start = detector.feed(data)
            if start is None:
                return
            self._detector = None
            screen = self.current = VirtualScreen(self.cols, self.rows)
            self._notify()
            data = start
        held_since = time.perf_counter()
        for at in range(0, len(data), SLICE_BYTES):
            if at and time.perf_counter() - held_since >= HOLD_S:
                _yield_to_io()
                if self.current is not screen:  # a new run began meanwhile: this one is over
                    return
                held_since = time.perf_counter()
            before = screen.seq
            screen.feed(data[at:at + SLICE_BYTES])
            if screen.seq != before:
                self._changed()

    def resize(self, cols: int, rows: int) -> None:
        """The PTY's size changed (and so will the next run's, unless its spec says otherwise)."""
        self.cols, self.rows = cols, rows
        if self.current is not None:
            self.current.resize(cols, rows)
            self._changed()

    def finish(self) -> None:
        """The run ended (its output is all fed): settle one last time."""
        self._cancel_timer()
        self._detector = None
        if self.current is not None:
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
        screen = self.current
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
