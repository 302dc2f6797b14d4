"""A node's local copy of recent events: what its tailer read, for replays without a round trip.

Every node reads the all-agents stream once (its tailer) and keeps the newest events here: a
window of all of them, and a smaller one per channel. A replay that starts inside a window is
served from memory (most resumes: a client that was dropped a moment ago); one that starts
before it reads Redis with ``XRANGE`` up to the window, then continues here. The windows are
contiguous: from :attr:`Window.start` (the first id the copy has without a hole) to the
newest id read, and a gap in what the tailer reads (a trim during a disconnect, a new epoch)
empties them (:meth:`LocalCopy.reset`) rather than leave a hole in them.

Bounded in events and in bytes (envelopes), like :class:`~supervisor.history.AgentHistory`'s
memory. Not thread-safe: one hub.
"""
from __future__ import annotations

from bisect import bisect_right

from ..events import Event


def _id(event: Event) -> int:
    return event.id


class Window:
    """The newest events of one stream, oldest first, contiguous from :attr:`start`.

    ``start`` is the first id the window vouches for: every event of its stream with an id at
    or above it is here. Evicting the oldest moves ``start`` past it.
    """

    __slots__ = ("_bytes", "_events", "_head", "max_bytes", "max_events", "start")

    def __init__(self, start: int, max_events: int, max_bytes: int) -> None:
        self.start = start
        self.max_events = max(1, max_events)
        self.max_bytes = max_bytes
        self._events: list[Event] = []
        self._head = 0  # evicted events stay in the list until half of it is dead (amortized)
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._events) - self._head

    def add(self, event: Event, size: int) -> None:
        """Keep ``event`` (``size``: its envelope's length, the measure of the byte bound)."""
        self._events.append(event)
        self._bytes += size
        while len(self._events) - self._head > self.max_events or (
            self._bytes > self.max_bytes and len(self._events) - self._head > 1
        ):
            old = self._events[self._head]
            self._head += 1
            self._bytes -= len(old.json)
            self.start = old.id + 1
        if self._head > 1024 and self._head * 2 > len(self._events):
            del self._events[: self._head]
            self._head = 0

    def covers(self, after_id: int) -> bool:
        """Whether every event of the stream after ``after_id`` is here (or newer than the copy)."""
        return after_id + 1 >= self.start

    def after(self, after_id: int, limit: int) -> list[Event]:
        """Up to ``limit`` events with ids above ``after_id``, oldest first."""
        events = self._events
        at = bisect_right(events, after_id, lo=self._head, key=_id)
        return events[at:at + limit]

    def last(self, n: int) -> list[Event]:
        return self._events[max(self._head, len(self._events) - n):] if n > 0 else []


class LocalCopy:
    """The windows of one node: every event (``all``), and per channel."""

    def __init__(self, start: int, max_events: int = 100_000, per_channel: int = 10_000,
                 max_bytes: int = 64 << 20, channel_bytes: int = 8 << 20) -> None:
        self.max_events = max_events
        self.per_channel = per_channel
        self.max_bytes = max_bytes
        self.channel_bytes = channel_bytes
        self.all = Window(start, max_events, max_bytes)
        self._channels: dict[str, Window] = {}
        #: The newest id added (the tailer's position).
        self.last_id = start - 1
        #: The epoch the copy's events belong to (set by the backend).
        self.epoch = ""

    def reset(self, start: int) -> None:
        """Forget everything: the copy continues contiguous from ``start``."""
        self.all = Window(start, self.max_events, self.max_bytes)
        self._channels = {}
        self.last_id = start - 1

    def add(self, channel: str, event: Event) -> None:
        size = len(event.json)
        self.all.add(event, size)
        window = self._channels.get(channel)
        if window is None:
            # A channel new to the copy: none of its events is newer than the copy's start.
            window = self._channels[channel] = Window(self.all.start, self.per_channel, self.channel_bytes)
        window.add(event, size)
        self.last_id = event.id

    def channel(self, channel: str) -> Window:
        """The window of one channel (an empty one, vouching from the copy's start, if it has
        no event in the copy)."""
        window = self._channels.get(channel)
        if window is None:
            return Window(self.all.start, 1, 0)
        return window

    def forget(self, channel: str) -> None:
        self._channels.pop(channel, None)
