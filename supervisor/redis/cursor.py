"""A replay on a node of the Redis backend: Redis up to the local copy, then the copy.

A cursor starts where the reader is (``after``). While the node's copy does not reach back that
far it reads the stream in Redis (``XRANGE``, one page per :meth:`RedisCursor.take`: the round
trip is the yield the contract allows); from the first id the copy vouches for it reads memory.
A reader that is caught up gets an empty list from memory, without a round trip.

``reset`` and ``missed`` are settled by the first :meth:`take` (callers read them after it):
what was trimmed by ``MAXLEN ~`` before the reader's id came back, what a node dropped while
Redis was away (holes), and a reader from another epoch. The all-agents stream is dense (one
entry per id), so what was trimmed from it is ``first retained - 1 - after``, exactly. A
channel's entries carry their ordinal ``n`` (``lua/append.lua``), so what was trimmed from a
channel's stream is ``n - 1`` of its first entry, exactly; for a reader whose id falls inside
the trimmed range the count is spread evenly over it, as the embedded backend does inside a
hole (its ids are not all that channel's).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..events import Event
from . import entries
from .writer import UNREACHABLE

if TYPE_CHECKING:
    from .backend import RedisEventLog
    from .window import Window

#: Entries per XRANGE page.
PAGE = 500


class RedisCursor:
    """The events after ``after`` of one channel (``channel``) or of all (None)."""

    def __init__(self, backend: RedisEventLog, after: int, channel: str | None) -> None:
        self.backend = backend
        self.channel = channel
        self.reset = False
        self.missed = 0
        self._after = after
        self._settled = False

    def _window(self) -> Window:
        copy = self.backend.copy
        return copy.all if self.channel is None else copy.channel(self.channel)

    def take(self, limit: int) -> list[Event]:
        try:
            if not self._settled:
                self._settle()
            window = self._window()
            if window.covers(self._after):
                found = window.after(self._after, limit)
            else:
                found = self._read(min(limit, PAGE)) or window.after(self._after, limit)
        except UNREACHABLE as exc:
            # The stream's client sees a connection that ended, and resumes later.
            raise ConnectionError(f"Redis cannot be read now: {exc}") from exc
        if found:
            self._after = found[-1].id
        return found

    def _read(self, limit: int) -> list[Event]:
        backend = self.backend
        key = backend.keys.stream if self.channel is None else backend.keys.channel_stream(self.channel)
        page = entries.page(backend.client.xrange(key, min=entries.stream_id(self._after + 1), count=limit))
        return [entries.to_event(entry_id, fields) for entry_id, fields in page]

    def _settle(self) -> None:
        self._settled = True
        after = self._after
        if after <= 0:
            return
        backend = self.backend
        epoch = backend.epoch
        if after < epoch.base:
            # From a Redis that is gone: what this node saw of it after the reader is lost.
            self.reset = True
            self.missed = backend.missed_in_previous(after, self.channel)
            self._after = 0
            return
        if after > backend.last_id() and after > backend.seq():
            self.reset, self._after = True, 0  # an id Redis never issued: replay everything
            return
        missed = backend.holes.missed_after(after, self.channel)
        if not self._window().covers(after):
            missed += self._trimmed(after)
        self.missed = missed
        self.reset = missed > 0

    def _trimmed(self, after: int) -> int:
        backend = self.backend
        client = backend.client
        if self.channel is None:
            head = entries.page(client.xrange(backend.keys.stream, count=1))
            return max(0, entries.event_id(head[0][0]) - 1 - after) if head else 0
        head = entries.page(client.xrange(backend.keys.channel_stream(self.channel), count=1))
        if not head:
            return 0
        first_kept = entries.event_id(head[0][0])
        trimmed = int(head[0][1].get(b"n", b"1")) - 1
        first = int(client.hget(backend.keys.meta, f"f:{self.channel}") or first_kept)
        if trimmed <= 0 or after >= first_kept - 1:
            return 0
        if after < first:
            return trimmed
        return round(trimmed * (first_kept - 1 - after) / max(1, first_kept - first))
