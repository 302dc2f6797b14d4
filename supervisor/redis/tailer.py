"""The node's one reader of the all-agents stream: it feeds the local copy and the local bus.

One ``XREAD BLOCK`` per node, not one per client: each entry becomes an :class:`Event` (this
node's own events are the objects ``append`` returned, already serialized; others' are parsed
from the stored envelope), goes into the :class:`~.window.LocalCopy` and is published on the
node's :class:`~supervisor.bus.EventBus`, in id order, once. The SSE manager is fed exactly as
by the embedded backend's commit.

Ids are dense within an epoch (every id is one entry), so the first entry after the position
must be ``position + 1``. A larger one is a **gap**: the stream was trimmed past this node while
it could not read (a long disconnect), or Redis is in a new epoch. Either way the copy cannot
vouch for what it holds any more: it is emptied, and the node *resyncs* (its live streams are
closed, so that their clients resume with ``Last-Event-ID`` into an honest ``reset``). When the
stream stays quiet the tailer looks at the epoch every block period: a wiped Redis whose new
ids are below the position would otherwise never show up.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gevent

from .. import events
from . import entries
from .writer import EVENTS_DROPPED, RETRY_FIRST_S, RETRY_MAX_S, UNREACHABLE

if TYPE_CHECKING:
    import redis

    from .backend import RedisEventLog

log = logging.getLogger(__name__)

#: How long one XREAD waits for new entries (ms), and the most entries it takes at once.
BLOCK_MS = 2000
COUNT = 2000


class Tailer:
    """Reads ``{as}:stream`` after ``position`` until closed (see the module docstring)."""

    def __init__(self, backend: RedisEventLog, client: redis.Redis, position: int) -> None:
        self.backend = backend
        self.client = client
        client.set_response_callback("XREAD", entries.raw_xread)  # its own client: entries by position
        #: The newest id read.
        self.position = position
        #: Gaps seen (trims past this node, new epochs).
        self.gaps = 0
        self._greenlet: gevent.Greenlet[..., Any] = gevent.spawn(self._run)

    def close(self) -> None:
        self._greenlet.kill(block=False)

    def _run(self) -> None:
        delay = RETRY_FIRST_S
        check = False
        while True:
            try:
                check = self._step(check)
            except UNREACHABLE as exc:
                self.backend.unreachable(exc)
                check = True  # whatever happened meanwhile, the epoch says first
                gevent.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            except Exception:
                log.exception("the tailer failed; it starts again")
                gevent.sleep(RETRY_MAX_S)
                check = True
            else:
                delay = RETRY_FIRST_S

    def _step(self, check: bool) -> bool:
        """One read and what it found; whether the epoch should be looked at next time."""
        backend = self.backend
        if check and self._new_epoch():
            return False
        reply = self.client.xread({backend.keys.stream: entries.stream_id(self.position)}, count=COUNT,
                                  block=BLOCK_MS)
        backend.reachable()
        found = entries.raw_reply(reply)
        if not found:
            return True  # quiet: a wiped Redis whose ids are below the position looks like this
        first = entries.event_id(found[0][0])
        if first != self.position + 1:
            if self._new_epoch():
                return False
            if self.position < backend.epoch.base < first:  # the writer joined the new epoch first
                self._restart(backend.epoch.base, "Redis is in a new epoch (wiped or replaced)")
            else:
                self._restart(first - 1, f"the all-agents stream was trimmed past this node"
                                         f" ({first - self.position - 1} events it never read)")
            if first <= self.position:
                return False
        self._publish(found)
        return False

    def _publish(self, found: list[entries.RawEntry]) -> None:
        backend = self.backend
        copy = backend.copy
        mine = backend.mine
        publish = backend.bus.publish
        last = backend.last_of
        holes = False
        for entry_id, fields in found:
            number = int(entry_id[:entry_id.index(b"-")])
            if len(fields) == 4 and fields[0] == b"channel" and fields[2] == b"event":
                channel, envelope = fields[1].decode(), fields[3]
            else:  # written by someone else than lua/append.lua: the slow way
                named = entries.raw_fields(fields)
                channel, envelope = named.get(b"channel", b"").decode(), named.get(b"event", b"")
            event = mine.pop(number, None)
            if event is None:
                try:
                    event = entries.parse(number, envelope.decode())
                except (ValueError, UnicodeDecodeError) as exc:
                    log.warning("skipping entry %d of %s: %s", number, backend.keys.stream, exc)
                    self.position = number
                    continue
            copy.add(channel, event)
            last[channel] = number
            self.position = number
            if event.type == events.ERROR and event.data.get("code") == EVENTS_DROPPED:
                holes = True
            elif event.type == events.AGENT_REMOVED:  # its history is gone: a new one of that name starts empty
                copy.forget(event.agent_name)
                last.pop(event.agent_name, None)
            try:
                publish(event)
            except Exception:  # a receiver connected to a signal directly raised (blinker's contract)
                log.exception("a receiver of %s events raised", event.type)
        backend.tailed(self.position)
        if holes:
            backend.holes_changed()

    def _restart(self, position: int, why: str) -> None:
        self.gaps += 1
        log.warning("%s: after id %d the copy of this node starts again at %d, and its live streams"
                    " resume into a reset", why, self.position, position + 1)
        self.backend.restart_copy(position)
        self.position = position

    def _new_epoch(self) -> bool:
        """Whether Redis is in another epoch than the node; then the node joins it, and reading
        goes on from the new epoch's base."""
        backend = self.backend
        if backend.current_epoch() == backend.epoch.id:
            return False
        backend.rejoin()
        self._restart(backend.epoch.base, "Redis is in a new epoch (wiped or replaced)")
        return True
