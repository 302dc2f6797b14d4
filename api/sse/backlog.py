"""What a client's socket has not taken yet, within bounds.

A flush hands every client the whole batch in one ``send``, so a backlog is usually empty; it
fills only when a socket's buffer is full. A client is slow when its socket does not take what
it is given *over time*, not when one flush is big: 100 agents starting at once put thousands
of events in a few flushes, which a client reading as fast as it can takes in some
milliseconds. So :meth:`Backlog.push` raises :class:`BacklogFull` (like gevent's
``Queue.put_nowait`` raising ``Full``) when the backlog is past ``max_events`` events or
``max_bytes`` bytes *and* the socket has taken nothing for ``stall_s`` seconds, or when it
would pass ``hard_bytes`` (memory stays bounded whatever the client does); the manager then
drops the client, which resumes from history with its Last-Event-ID. A client that stopped
reading is dropped as soon as it passes the bounds (its socket took nothing for longer than
that). The chunks are the flush's shared ``bytes`` objects (or a tail of one), never copies
per client.
"""
from __future__ import annotations

from collections import deque


class BacklogFull(Exception):
    """A push would take the backlog past its bounds; the backlog is unchanged."""


def unsent_events(count: int, size: int, rest: int) -> int:
    """Of a chunk of ``count`` events in ``size`` bytes whose last ``rest`` bytes were not
    written, how many events were not (wholly) written: in proportion, rounded up."""
    return -(-count * rest // size)


class _Chunk:
    __slots__ = ("count", "data")

    def __init__(self, data: bytes, count: int) -> None:
        self.data = data
        self.count = count


#: The hard bound of a backlog, in multiples of ``max_bytes``.
HARD_FACTOR = 8


class Backlog:
    """Chunks of bytes waiting for one socket, each with the number of events it holds.
    ``progress_at`` is when the socket last took something (or the backlog began)."""

    __slots__ = ("_chunks", "bytes", "events", "hard_bytes", "max_bytes", "max_events", "progress_at", "stall_s")

    def __init__(self, max_events: int, max_bytes: int, stall_s: float = 0.5) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.stall_s = stall_s
        self.hard_bytes = max_bytes * HARD_FACTOR
        self._chunks: deque[_Chunk] = deque()
        self.bytes = 0
        self.events = 0
        self.progress_at = 0.0

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def push(self, data: bytes, count: int, now: float) -> None:
        """Queue ``data`` (``count`` events) at time ``now``; raises :class:`BacklogFull` when
        the client does not keep up (see the module docstring)."""
        events, size = self.events + count, self.bytes + len(data)
        if not self._chunks:
            self.progress_at = now  # it took everything until now
        if size > self.hard_bytes or (
            (events > self.max_events or size > self.max_bytes) and now - self.progress_at > self.stall_s
        ):
            raise BacklogFull(f"{events} events / {size} bytes queued, nothing taken for"
                              f" {now - self.progress_at:.1f} s")
        self._chunks.append(_Chunk(data, count))
        self.bytes = size
        self.events = events

    def pending(self) -> bytes:
        """Everything queued, as one buffer for one ``send``."""
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks[0].data
        return b"".join([chunk.data for chunk in chunks])

    def consume(self, written: int, now: float) -> int:
        """Forget the first ``written`` bytes (whole chunks go, a cut one shrinks), taken by the
        socket at time ``now``; returns how many events were wholly written."""
        if written:
            self.progress_at = now
        chunks = self._chunks
        done_total = 0
        while chunks and written:
            chunk = chunks[0]
            size = len(chunk.data)
            if written >= size:
                chunks.popleft()
                written -= size
                done = chunk.count
            else:
                rest = chunk.data[written:]
                left = unsent_events(chunk.count, size, len(rest))
                done = chunk.count - left
                chunk.data, chunk.count = rest, left
                size = written
                written = 0
            self.bytes -= size
            self.events -= done
            done_total += done
        return done_total

    def unfinished_frame(self) -> bytes:
        """The rest of the frame a partial write cut (up to its blank line), to finish it before
        a last word to the client; empty when nothing is queued."""
        if not self._chunks:
            return b""
        head = self._chunks[0].data
        end = head.find(b"\n\n")
        return head[: end + 2] if end >= 0 else head

    def clear(self) -> None:
        self._chunks.clear()
        self.bytes = self.events = 0
