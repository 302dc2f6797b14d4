"""SSE over a raw socket, parsed by the project's own parser (:class:`supervisor.client.SSEParser`).

Raw sockets on purpose: the tests check bytes on the wire, and a reader that stops reading (a
small receive buffer) is how a slow consumer is made.
"""
from __future__ import annotations

import select
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from supervisor.client import SSEEvent, SSEParser

if TYPE_CHECKING:
    from .net import Headers
    from .processes import Server

__all__ = ["SSEEvent", "SSEStream", "collect", "extractions", "follow", "parse_frames", "plain", "read_all"]


def parse_frames(data: bytes) -> list[SSEEvent]:
    """Every event in ``data``, as a browser's parser would dispatch them."""
    return SSEParser().feed(data)


class SSEStream:
    """A raw SSE connection: the response head, then events as the client's parser gives them."""

    def __init__(self, url: str, path: str, headers: Headers = None, timeout: float = 10.0,
                 rcvbuf: int | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((parts.hostname, parts.port))
        given = {k.lower(): v for k, v in (headers or {}).items()}
        head = [f"GET {path} HTTP/1.1", "Accept: text/event-stream"]
        if given.get("host", parts.netloc) is not None:  # a Host given replaces ours; None leaves it out
            head.insert(1, f"Host: {given.get('host', parts.netloc)}")
        head += [f"{k}: {v}" for k, v in (headers or {}).items() if v is not None and k.lower() != "host"]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))  # characters are bytes
        buffer = b""
        self.raw = bytearray()  # every body byte received, for frame-level assertions
        self.closed = False
        self.parser = SSEParser()
        while b"\r\n\r\n" not in buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
        head_raw, _, body = buffer.partition(b"\r\n\r\n")
        lines = head_raw.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines and lines[0] else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self._ready: deque[SSEEvent] = deque()
        self._take(body)

    @property
    def retry(self) -> int | None:
        """The last ``retry:`` the server sent, in milliseconds."""
        return self.parser.retry_ms

    def _take(self, chunk: bytes) -> None:
        self.raw += chunk
        self._ready.extend(self.parser.feed(chunk))

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no SSE data before the deadline")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            return False
        self._take(chunk)
        return True

    def next(self, timeout: float = 10.0) -> SSEEvent | None:
        """The next dispatched event, or None when the server ended the response."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self.closed or not self._fill(deadline):
                return None
        return self._ready.popleft()

    def take(self, timeout: float = 10.0) -> SSEEvent:
        """The next event; fails the test if the response ends first."""
        event = self.next(timeout)
        if event is None:
            raise AssertionError("the stream ended before the next event")
        return event

    def events(self, timeout: float = 10.0) -> Iterator[SSEEvent]:
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.001, deadline - time.monotonic()))
            if event is None:
                return
            yield event

    def until(self, predicate: Callable[[SSEEvent], bool], timeout: float = 10.0) -> list[SSEEvent]:
        """Events up to and including the first that satisfies ``predicate``."""
        got = []
        for event in self.events(timeout):
            got.append(event)
            if predicate(event):
                return got
        raise AssertionError(f"stream ended before the awaited event; got {[(e.event, e.id) for e in got][-5:]}")

    def buffered(self) -> bool:
        """Whether a whole event is already parsed (so select() would not say so)."""
        return bool(self._ready)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> SSEStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_all(streams: list[SSEStream], until: Callable[[SSEEvent], bool], timeout: float = 30.0) -> list[list[SSEEvent]]:
    """Read many streams at once (as concurrent clients would) until each has seen ``until``."""
    results: list[list[SSEEvent]] = [[] for _ in streams]
    active = set(range(len(streams)))
    deadline = time.monotonic() + timeout
    while active:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{len(active)} streams did not finish in {timeout} s")
        ready = [i for i in active if streams[i].buffered()]
        if not ready:
            socks = {streams[i].sock: i for i in active}
            readable, _, _ = select.select(list(socks), [], [], min(remaining, 1.0))
            ready = [socks[s] for s in readable]
        for i in ready:
            event = streams[i].next(timeout=max(0.01, deadline - time.monotonic()))
            if event is None:
                raise AssertionError(f"stream {i} ended early after {[(e.event, e.id) for e in results[i]][-3:]}")
            results[i].append(event)
            if until(event):
                active.discard(i)
    return results


def follow(server: Server, path: str, last_id: str | None = None, timeout: float = 60.0,
           stop: Callable[[SSEEvent], bool] = lambda e: e.event == "complete") -> tuple[list[SSEEvent], int]:
    """Read a stream as a well-behaved client does: when dropped (slow_consumer, or the end of
    the response) reconnect with Last-Event-ID, until ``stop``. Returns the stored events seen
    and how many times it had to reconnect."""
    events: list[SSEEvent] = []
    reconnects = -1
    deadline = time.monotonic() + timeout
    while True:
        reconnects += 1
        headers = {"Last-Event-ID": last_id} if last_id else {}
        with server.stream(path, headers=headers) as stream:
            if stream.status == 204:
                return events, reconnects
            for event in stream.events(max(0.1, deadline - time.monotonic())):
                if event.id is not None:
                    events.append(event)
                    last_id = event.id
                if stop(event):
                    return events, reconnects
        if time.monotonic() > deadline:
            raise AssertionError(f"stream did not finish in {timeout} s")


def plain(event: SSEEvent) -> str:
    data = event.json()["data"]
    return str(data.get("plain", data.get("line", "")))


def collect(server: Server, name: str, done: Callable[[list[SSEEvent]], bool],
            timeout: float) -> list[SSEEvent]:
    """The agent's stream from the start until ``done(events so far)`` holds."""
    seen: list[SSEEvent] = []
    with server.stream(f"/api/agents/{name}/stream", timeout=timeout) as stream:
        def enough(event: SSEEvent) -> bool:
            seen.append(event)
            return done(seen)
        stream.until(enough, timeout=timeout)
    return seen


def extractions(events: list[SSEEvent]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for event in events:
        if event.event == "extraction":
            data = event.json()["data"]
            found.setdefault(data["name"], []).append(data["value"])
    return found
