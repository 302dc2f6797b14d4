"""The node's one writer: group commit of appended events into Redis, in order, retried, bounded.

``append`` on the hub must not wait for Redis (an agent's state change and its output stay
atomic), so it only queues. One greenlet takes everything queued (up to :data:`BATCHES` batches
of :data:`BATCH_EVENTS`) and sends it in one round trip of ``lua/append.lua`` calls; while that
is in flight the next group gathers. A group, once formed, is sent again exactly as it was until
Redis answers (the script remembers each batch number, so a group whose reply was lost is
written once): that is what makes retries safe, and why nothing is added to a group in flight.

When Redis cannot be reached, agents go on and their events wait here, up to ``max_events``.
Beyond that the oldest waiting events are dropped and counted per channel; before the next
group is written, the count goes to Redis as a *hole* (``{as}:holes``: readers resuming from
before it get ``reset`` with the count), and the group starts with an ``error`` event
``events_dropped`` that says so on the all-agents stream. Events a fenced node could not write
are dropped the same way: they were refused.
"""
from __future__ import annotations

import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

import redis

from .. import events
from ..events import Event
from .append import RETRY_WINDOW
from .errors import EpochChanged, Fenced, RedisRefused, Rewound

if TYPE_CHECKING:
    from .backend import RedisEventLog

log = logging.getLogger(__name__)

#: Events per script call, and script calls per round trip (the script's retry window).
BATCH_EVENTS = 500
BATCHES = RETRY_WINDOW
#: The error code of the event that says events were dropped.
EVENTS_DROPPED = "events_dropped"
#: Backoff between attempts while Redis is away (seconds): first, then doubling up to the last.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0
#: The head every queued envelope starts with (its id is not known yet).
_HEAD = '{"id":0,'

#: A queued event: the event (id 0 until written), its channel, its envelope after the head.
Queued = tuple[Event, str, str]

#: Redis (or the way to it) is away: retry later, the same group.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)


class Writer:
    """Queues events and writes them with the backend's appender (see the module docstring)."""

    def __init__(self, backend: RedisEventLog, max_events: int) -> None:
        self.backend = backend
        self.max_events = max(1, max_events)
        self._queue: deque[Queued] = deque()
        self._wake = gevent.event.Event()
        self._idle = gevent.event.Event()
        self._idle.set()
        self._dropped: dict[str, int] = {}
        #: Events dropped in all (waiting past the bound, or refused by fencing).
        self.dropped_total = 0
        #: The newest id this writer has been given by Redis.
        self.written_id = 0
        self._closed = False
        self._greenlet: gevent.Greenlet[..., Any] = gevent.spawn(self._run)

    @property
    def waiting(self) -> int:
        """Events queued, not yet written."""
        return len(self._queue) + self._inflight

    _inflight = 0

    def put(self, event: Event, channel: str) -> None:
        """Queue ``event`` (made with id 0) for ``channel``'s stream; never yields."""
        text = event.json
        self._queue.append((event, channel, text[len(_HEAD):]))
        if len(self._queue) > self.max_events:
            _, lost, _ = self._queue.popleft()
            self._drop(lost, 1)
        if not self._wake.is_set():
            self._idle.clear()
            self._wake.set()

    def _drop(self, channel: str, count: int, why: str = "") -> None:
        if not self._dropped:
            log.warning("events are being dropped (%s); resumers will be told with reset",
                        why or f"{self.max_events} wait for Redis already, the bound")
        self._dropped[channel] = self._dropped.get(channel, 0) + count
        self.dropped_total += count
        self.backend.health.events_lost += count

    def cut(self, why: str) -> None:
        """Drop everything queued now (a fenced node: it was appended while the node may have
        been taken for dead)."""
        while self._queue:
            _, channel, _ = self._queue.popleft()
            self._drop(channel, 1, why)

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until everything queued is written; False when ``timeout`` passed first."""
        return bool(self._idle.wait(timeout))

    def close(self) -> None:
        self._closed = True
        self._greenlet.kill(block=False)

    # -- the greenlet ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            if not self._queue and not self._dropped:
                self._idle.set()
                self._wake.clear()
                self._wake.wait()
                continue
            self._idle.clear()
            group = self._take()
            self._inflight = sum(len(batch) for batch in group)
            try:
                self._write(group)
            except Exception:
                log.exception("writing %d events to Redis failed; they are dropped", self._inflight)
                for batch in group:
                    for _, channel, _ in batch:
                        self._drop(channel, 1, "writing them failed")
            finally:
                self._inflight = 0

    def _take(self) -> list[list[Queued]]:
        queue = self._queue
        group: list[list[Queued]] = []
        if self._dropped:
            group.append([self._dropped_event()])
        while queue and len(group) < BATCHES:
            batch = group[-1] if group and len(group[-1]) < BATCH_EVENTS else None
            if batch is None:
                batch = []
                group.append(batch)
            room = BATCH_EVENTS - len(batch)
            for _ in range(min(room, len(queue))):
                batch.append(queue.popleft())
        return group

    def _dropped_event(self) -> Queued:
        """Write the hole now (its count is final), and the event that tells the streams."""
        dropped, self._dropped = self._dropped, {}
        token = secrets.token_hex(6)
        self._retry(lambda: self.backend.holes.record(token, dropped))
        total = sum(dropped.values())
        from ..eventlog import SUPERVISOR_CHANNEL

        event = Event(0, events.ERROR, SUPERVISOR_CHANNEL, {
            "code": EVENTS_DROPPED, "dropped": total, "agents": dict(sorted(dropped.items())),
            "message": f"{total} events could not be written to Redis in time and were dropped",
        })
        return (event, SUPERVISOR_CHANNEL, event.json[len(_HEAD):])

    def _retry(self, attempt: Any) -> Any:
        """Call ``attempt`` until Redis answers (backing off on the hub while it is away)."""
        delay = RETRY_FIRST_S
        while True:
            try:
                result = attempt()
            except UNREACHABLE as exc:
                self.backend.unreachable(exc)
                if self._closed:
                    raise
                gevent.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                self.backend.reachable()
                return result

    def _write(self, group: list[list[Queued]]) -> None:
        while group:
            batches = [[(channel, tail) for _, channel, tail in batch] for batch in group]
            token = self.backend.lease.token
            try:
                firsts = self._retry(lambda: self.backend.appender.append_many(batches))  # noqa: B023  # called at once
            except RedisRefused as exc:
                self._assign(group[:len(exc.written)], exc.written)
                group = group[len(exc.written):]
                if isinstance(exc, (EpochChanged, Rewound)):
                    self._retry(self.backend.rejoin)
                    continue
                if isinstance(exc, Fenced):
                    # Written while the node may have been taken for dead: refused, and dropped.
                    log.error("this node's lease is gone: %d events it could not write are dropped", sum(map(len, group)))
                    for batch in group:
                        for _, channel, _ in batch:
                            self._drop(channel, 1, "refused: this node was fenced")
                    if self.backend.lease.token == token:  # nobody has registered the node again yet
                        self._retry(self.backend.fenced)
                    return
                raise
            else:
                self._assign(group, firsts)
                return

    def _assign(self, group: list[list[Queued]], firsts: list[int]) -> None:
        mine = self.backend.mine
        tailed = self.backend.copy.last_id  # what the tailer read already it parsed itself
        for batch, first in zip(group, firsts):
            for i, (event, _, _) in enumerate(batch):
                event.assign(first + i)
                if first + i > tailed:
                    mine[first + i] = event
            self.written_id = max(self.written_id, first + len(batch) - 1)
        self.backend.written(self.written_id)
