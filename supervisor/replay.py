"""Replaying history in bounded steps, so that no replay holds the hub (issue 12).

A replay is a cursor: each :meth:`take` returns the next events, oldest first, after doing a
bounded amount of work (one chunk of a file per channel it has to read, or a few milliseconds
of merging), and an empty list only once the reader has everything, without yielding after it
found that out (so that the SSE manager can register the client as live in the same breath).
Between takes the caller yields with :func:`pause`: live streams, ``/healthz`` and every other
greenlet get the hub back at least every few milliseconds, whatever the size of the history.
A :class:`Pacer` goes further: all replays together take at most a share of the hub's time
(half, by default). Replaying flat out, a server is busy all the time, and on a machine whose
cores are shared (the clients, other programs) a busy process waits for the CPU where an idle
one would be woken at once, so the live events of everyone else would wait too: measured in
docs/PERFORMANCE.md, the watchers' p99 went from 5 to 18-21 ms; paced, a replay still sends
well over 100,000 events a second.

One agent's replay is its :class:`~supervisor.history.HistoryCursor`. Every agent's replay (the
``/api/stream`` of a new dashboard) is :class:`MergedCursor`, an incremental k-way merge: each
channel is read a chunk at a time into a small buffer, a heap keyed on the buffers' first ids
gives the next event, and a channel is read again only when its buffer is used up. The work per
event is the same whether there are 2 agents or 1,000; reading ``limit`` events from every
history for every batch (what this replaced) was quadratic in the number of agents.
"""
from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from gevent.hub import Waiter, get_hub

from .events import Event

if TYPE_CHECKING:
    from .history import AgentHistory, HistoryCursor

#: Longest wait in :func:`pause` while the hub is busy (seconds).
PAUSE_MAX_S = 0.002
#: Events a merge takes from one channel at a time, and the bytes of file it reads for them.
LANE_EVENTS = 512
LANE_BYTES = 96 << 10
#: How long one take of a merge may work before it returns what it has (seconds).
TAKE_BUDGET_S = 0.004
#: The share of the hub's time all replays together may use.
REPLAY_SHARE = 0.5
#: A pacer rests by a timer only once it owes this much (seconds): a libev timer on epoll waits
#: whole milliseconds, so resting 0.6 ms at a time would rest 1 ms and waste a third.
PACE_MIN_SLEEP_S = 0.002


def pause(max_wait: float = PAUSE_MAX_S) -> None:
    """Let everything else that is ready run, then come back: when the hub has nothing else to
    do (its idle watcher), or after ``max_wait`` while it stays busy. ``gevent.sleep(0)`` is not
    enough: it resumes in the same pass over callbacks, before any socket is polled, so a loop
    of them starves every stream; a timer alone costs a whole millisecond on an idle hub."""
    loop = get_hub().loop
    waiter: Waiter[None] = Waiter()
    idle = loop.idle()
    timer = loop.timer(max_wait)
    idle.start(waiter.switch, None)
    timer.start(waiter.switch, None)
    try:
        waiter.get()
    finally:
        idle.stop()
        timer.stop()
        idle.close()
        timer.close()


class Pacer:
    """Keeps all replays together to ``share`` of the hub's time: after each step, a replay
    rests in proportion to the work it just did, the debts of all replays adding up."""

    __slots__ = ("_next", "share")

    def __init__(self, share: float = REPLAY_SHARE) -> None:
        self.share = share
        self._next = 0.0

    def rest(self, worked_s: float) -> None:
        """Yield after a step that took ``worked_s`` of the hub's time: at least :func:`pause`,
        and until the replays' share allows the next step."""
        now = time.monotonic()
        self._next = max(self._next, now) + worked_s * (1 - self.share) / self.share
        wait = self._next - now
        if wait >= PACE_MIN_SLEEP_S:  # a debt of some milliseconds: the timer's rounding is small in it
            import gevent

            gevent.sleep(wait)
        else:
            pause()


class Cursor(Protocol):
    """A replay in progress (see the module docstring)."""

    #: Some events after the reader's id are gone (``missed`` of them), or the id is one this
    #: supervisor never gave out (``missed`` 0): the reader should know before the events.
    reset: bool
    missed: int

    def take(self, limit: int) -> list[Event]: ...


class ChannelCursor:
    """One channel's replay: its history's cursor, with what the reader missed."""

    __slots__ = ("_cursor", "missed", "reset")

    def __init__(self, cursor: HistoryCursor | None, reset: bool, missed: int) -> None:
        self._cursor = cursor
        self.reset = reset
        self.missed = missed

    def take(self, limit: int) -> list[Event]:
        return self._cursor.take(limit) if self._cursor is not None else []


class _Lane:
    """One channel in a merge: its cursor and the events read ahead from it."""

    __slots__ = ("buffer", "cursor", "number", "pos")

    def __init__(self, cursor: HistoryCursor, number: int) -> None:
        self.cursor = cursor
        self.number = number
        self.buffer: list[Event] = []
        self.pos = 0


class MergedCursor:
    """Every channel's events after ``after``, in id order, read incrementally.

    ``histories()`` gives the event log's histories by name as they are now (agents come and go
    during a long replay) and ``committed()`` its newest visible id. A channel's events that
    become visible during the replay are picked up before any event with a higher id is given.
    """

    def __init__(self, histories: Callable[[], Iterable[tuple[str, AgentHistory]]], committed: Callable[[], int],
                 after: int, reset: bool = False, missed: int = 0) -> None:
        self.reset = reset
        self.missed = missed
        self._histories = histories
        self._committed = committed
        self._after = after
        self._lanes: dict[str, _Lane] = {}
        self._heap: list[tuple[int, int, _Lane]] = []
        self._unread: list[_Lane] = []
        self._idle: list[_Lane] = []
        self._checked = -1  # every channel was looked at when this id was the newest
        self._rescan()

    def _rescan(self) -> bool:
        """Find channels with visible events the merge has not read: new ones, and exhausted
        ones that grew. Returns whether there were any."""
        self._checked = self._committed()
        found = False
        for name, history in self._histories():
            lane = self._lanes.get(name)
            if lane is None:
                if history.visible_id > self._after:
                    lane = _Lane(history.cursor(self._after), len(self._lanes))
                    self._lanes[name] = lane
                    self._unread.append(lane)
                    found = True
        if self._idle:
            still = []
            for lane in self._idle:
                if lane.cursor.history.visible_id > lane.cursor.after:
                    self._unread.append(lane)
                    found = True
                else:
                    still.append(lane)
            self._idle = still
        return found

    def _fill(self, lane: _Lane) -> None:
        lane.buffer = lane.cursor.take(LANE_EVENTS, LANE_BYTES)
        lane.pos = 0
        if lane.buffer:
            heapq.heappush(self._heap, (lane.buffer[0].id, lane.number, lane))
        else:
            self._idle.append(lane)

    def _read_unread(self) -> None:
        """Fill every channel not read yet: all of them must be, before the smallest head is
        known. Pauses between reads once the take's budget is used."""
        deadline = time.monotonic() + TAKE_BUDGET_S
        while self._unread:
            self._fill(self._unread.pop())
            if self._unread and time.monotonic() > deadline:
                pause()
                deadline = time.monotonic() + TAKE_BUDGET_S

    def take(self, limit: int) -> list[Event]:
        """The next events in id order (at most ``limit``, about :data:`TAKE_BUDGET_S` of
        work); empty only when every channel is caught up, and then without yielding after
        the last look."""
        out: list[Event] = []
        heap = self._heap
        self._read_unread()
        deadline = time.monotonic() + TAKE_BUDGET_S
        while len(out) < limit:
            if not heap or heap[0][0] > self._checked:
                if self._rescan():
                    self._read_unread()
                    continue
                if not heap:
                    break
            _, _, lane = heap[0]
            event = lane.buffer[lane.pos]
            lane.pos += 1
            out.append(event)
            if lane.pos < len(lane.buffer):
                heapq.heapreplace(heap, (lane.buffer[lane.pos].id, lane.number, lane))
            else:
                heapq.heappop(heap)
                self._fill(lane)
                if time.monotonic() > deadline:
                    break
        if out:
            self._after = out[-1].id
        return out
