"""What a client's socket has not taken yet, within bounds.

A flush hands every client the whole batch in one ``send``, so a backlog is usually empty; it
fills only when a socket's buffer is full. Past ``max_events`` events or ``max_bytes`` bytes the
client does not keep up: :meth:`Backlog.push` raises :class:`BacklogFull` (like gevent's
``Queue.put_nowait`` raising ``Full``) and the manager drops the client, which then resumes from
history with its Last-Event-ID. The chunks are the flush's shared ``bytes`` objects (or a tail
of one), never copies per client.
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


class Backlog:
    """Chunks of bytes waiting for one socket, each with the number of events it holds."""

    __slots__ = ("_chunks", "bytes", "events", "max_bytes", "max_events")

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._chunks: deque[_Chunk] = deque()
        self.bytes = 0
        self.events = 0

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def push(self, data: bytes, count: int) -> None:
        """Queue ``data`` (``count`` events); raises :class:`BacklogFull` past the bounds."""
        if self.events + count > self.max_events or self.bytes + len(data) > self.max_bytes:
            raise BacklogFull(f"{self.events + count} events / {self.bytes + len(data)} bytes queued")
        self._chunks.append(_Chunk(data, count))
        self.bytes += len(data)
        self.events += count

    def pending(self) -> bytes:
        """Everything queued, as one buffer for one ``send``."""
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks[0].data
        return b"".join([chunk.data for chunk in chunks])

    def consume(self, written: int) -> int:
        """Forget the first ``written`` bytes (whole chunks go, a cut one shrinks); returns how
        many events were wholly written."""
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
