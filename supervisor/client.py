"""A small blocking client for the agent-supervisor API: JSON requests and resumable SSE streams.

Stdlib only (``http.client``), no Flask, no gevent: it is what the command line uses, and tests
can use it too. Three parts:

- :class:`SSEParser` turns bytes into events by the WHATWG rules (any of CRLF, LF and CR ends a
  line, also when CR and LF arrive in different reads; a UTF-8 character may be split between
  reads; a block without ``data`` is not dispatched but its ``id`` still counts). It does no I/O.
- :class:`Client` makes one request per call on a fresh connection and turns every failure into
  an :class:`ApiError` whose text is one line a person can act on.
- :class:`Follower` reads a stream across dropped connections: it reconnects with
  ``Last-Event-ID`` after a growing delay, so what it yields has no gap and no duplicate.
"""
from __future__ import annotations

import codecs
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_URL = "http://127.0.0.1:8151"

#: A stream that is silent for this long is taken as dead: the server pings every 15 s.
STREAM_IDLE_TIMEOUT_S = 45.0


# --------------------------------------------------------------------------- SSE parsing


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``id`` is the event's own ``id:`` field, None when it had none
    (``connected``, ``ping``, ``reset``); ``last_event_id`` is the stream's, as EventSource keeps it.
    """

    event: str
    data: str
    id: str | None = None
    last_event_id: str = ""

    def json(self) -> Any:
        """``data`` decoded as JSON; raises ``ValueError`` if it is not JSON."""
        return json.loads(self.data)


class SSEParser:
    """Incremental ``text/event-stream`` parser (WHATWG HTML, "Server-sent events", 9.2.6).

    ``feed`` takes bytes as they arrive and returns the events completed by them; an event whose
    blank line has not arrived yet stays buffered, and is dropped if the stream ends first (as a
    browser does). Not safe to share between threads.
    """

    __slots__ = ("_after_cr", "_data", "_decoder", "_event", "_id_in_block", "_line", "_started",
                 "last_event_id", "retry_ms")

    def __init__(self, last_event_id: str = "") -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line: list[str] = []
        self._after_cr = False  # the last character seen was CR: a following LF is the same break
        self._started = False  # the leading BOM, if any, is skipped once
        self._data: list[str] = []
        self._event = ""
        self._id_in_block: str | None = None
        #: The last ``id:`` seen, kept across events and given to a reconnection.
        self.last_event_id = last_event_id
        #: The last valid ``retry:`` in milliseconds, or None.
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        events: list[SSEEvent] = []
        start = 0
        for index, char in enumerate(text):
            if char != "\r" and char != "\n":
                continue
            if char == "\n" and self._after_cr and index == start:
                # The LF of a CRLF whose CR ended the previous line (possibly in the last chunk).
                self._after_cr = False
                start = index + 1
                continue
            self._line.append(text[start:index])
            self._after_cr = char == "\r"
            start = index + 1
            event = self._process_line("".join(self._line))
            self._line.clear()
            if event is not None:
                events.append(event)
        if start < len(text):
            self._after_cr = False
            self._line.append(text[start:])
        return events

    def _process_line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
                self._id_in_block = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None  # any other field is ignored

    def _dispatch(self) -> SSEEvent | None:
        event_id, self._id_in_block = self._id_in_block, None
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data), event_id,
                         self.last_event_id)
        self._data.clear()
        self._event = ""
        return event


# --------------------------------------------------------------------------- HTTP


class ApiError(Exception):
    """A request that failed: ``status`` is the HTTP status (0 when no server answered) and
    ``code`` the API's error code; ``str()`` is a one-line message for a person.
    """

    def __init__(self, message: str, status: int = 0, code: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        #: Seconds the server asked to wait before trying again (``Retry-After`` on a 503).
        self.retry_after = 0.0


class ServerUnreachable(ApiError):
    """Nothing answered at the server's address (refused, reset, timed out, unknown host)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0, "server_unreachable")


def _error_from(status: int, body: bytes, reason: str) -> ApiError:
    """The API's ``{"error": {code, message}}`` body as an :class:`ApiError`."""
    try:
        error = json.loads(body)["error"]
        return ApiError(str(error["message"]), status, str(error["code"]))
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip().splitlines()
        return ApiError(f"HTTP {status} {reason}" + (f": {text[0][:200]}" if text else ""), status)


class Client:
    """Calls one server. Every method blocks for at most ``timeout`` seconds per request and
    raises :class:`ApiError` (or :class:`ServerUnreachable`) for anything but success.

    Holds no connection between calls, so it is cheap to create and safe to share.
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None,
                 timeout: float = 10.0, renew: Callable[[], str | None] | None = None) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(f"invalid server URL {url!r}: expected http://HOST:PORT")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.token = token or None
        self.timeout = timeout
        #: Where a new token comes from when the server refuses this one (the command line
        #: rereads the runtime file: a restarted server may have generated another).
        self._renew = renew

    def renew_token(self) -> bool:
        """After a 401: take a new token from ``renew``; True if there is a different one."""
        fresh = self._renew() if self._renew is not None else None
        if fresh and fresh != self.token:
            self.token = fresh
            return True
        return False

    # -- plumbing

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "agent-supervisor-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def _unreachable(self, exc: BaseException) -> ServerUnreachable:
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, ConnectionRefusedError):
            why = "connection refused; is `agent-supervisor serve` running?"
        elif isinstance(exc, socket.gaierror):
            why = f"unknown host {self._host!r}"
        elif isinstance(exc, (TimeoutError, socket.timeout)):
            why = "timed out"
        return ServerUnreachable(f"cannot reach the server at {self.url}: {why}")

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Any:
        """Send one request; return the decoded JSON body (None for an empty one)."""
        data = None if body is None else json.dumps(body).encode()
        extra = dict(headers or {})
        if data is not None:
            extra["Content-Type"] = "application/json"
        conn = self._connection(self.timeout)
        try:
            conn.request(method, self._prefix + path, data, self._headers(extra))
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()
        if response.status >= 400:
            raise _error_from(response.status, payload, response.reason)
        if not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError:
            raise ApiError(f"the server at {self.url} sent a response that is not JSON "
                           f"(HTTP {response.status}); is it an agent-supervisor?",
                           response.status) from None

    # -- the API, one method per route

    def health(self) -> dict[str, Any]:
        return dict(self.request("GET", "/healthz"))

    def agents(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/agents")["agents"])

    def agent(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/agents/{quote(name, safe='')}"))

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/api/agents", spec))

    def stop(self, name: str, grace_s: float | None = None) -> dict[str, Any]:
        body = None if grace_s is None else {"grace_s": grace_s}
        return dict(self.request("POST", f"/api/agents/{quote(name, safe='')}/stop", body))

    def restart(self, name: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/agents/{quote(name, safe='')}/restart"))

    def send_input(self, name: str, data: str) -> None:
        self.request("POST", f"/api/agents/{quote(name, safe='')}/input", {"data": data})

    def resize(self, name: str, cols: int, rows: int) -> None:
        self.request("POST", f"/api/agents/{quote(name, safe='')}/resize", {"cols": cols, "rows": rows})

    def reload(self, timeout: float = 120.0) -> dict[str, Any]:
        """Have the server reload its config file; waits while it stops what changed."""
        saved, self.timeout = self.timeout, max(self.timeout, timeout)
        try:
            return dict(self.request("POST", "/api/reload"))
        finally:
            self.timeout = saved

    def delete(self, name: str) -> None:
        self.request("DELETE", f"/api/agents/{quote(name, safe='')}")

    def events(self, name: str, after: int = 0, limit: int = 1000) -> dict[str, Any]:
        query = urlencode({"after": after, "limit": limit})
        return dict(self.request("GET", f"/api/agents/{quote(name, safe='')}/events?{query}"))

    def stats(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/sse/stats"))

    # -- streams

    def open_stream(self, path: str, last_event_id: str | None = None,
                    idle_timeout: float = STREAM_IDLE_TIMEOUT_S) -> Stream:
        """Open one SSE connection to ``path`` (``/api/stream`` or an agent's stream).

        Returns a :class:`Stream` whose ``status`` is 200 or 204 (nothing more to send); raises
        :class:`ApiError` for any other answer, with ``retry_after`` set on a 503.
        """
        extra = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id:
            extra["Last-Event-ID"] = last_event_id
        conn = self._connection(idle_timeout)
        try:
            conn.request("GET", self._prefix + path, headers=self._headers(extra))
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._unreachable(exc) from None
        if response.status not in (200, 204):
            try:
                payload = response.read()
            except (OSError, http.client.HTTPException):
                payload = b""
            conn.close()
            error = _error_from(response.status, payload, response.reason)
            retry_after = response.getheader("Retry-After")
            if retry_after and retry_after.isdigit():
                error.retry_after = float(retry_after)
            raise error
        return Stream(conn, response, last_event_id or "")


class Stream:
    """One open SSE response. Iterate it for events; it ends when the server ends the response.

    Raises ``OSError`` or ``http.client.HTTPException`` when the connection breaks (a timeout
    after ``idle_timeout`` of silence included). Close it when done; not thread-safe.
    """

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 last_event_id: str) -> None:
        self.status = response.status
        self._conn = conn
        self._response = response
        self.parser = SSEParser(last_event_id)

    def __iter__(self) -> Iterator[SSEEvent]:
        if self.status == 204:
            return
        while True:
            chunk = self._response.read1(65536)
            if not chunk:
                return
            yield from self.parser.feed(chunk)

    def close(self) -> None:
        self._response.close()
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- resuming


class StreamTimeout(ApiError):
    """A :class:`Follower` with a deadline did not see its stream end in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0, "timeout")


class Follower:
    """Reads a stream across dropped connections and server restarts, without gap or duplicate.

    After a drop it reconnects with ``Last-Event-ID`` (the last ``id:`` received), waiting
    ``backoff_s`` and doubling up to ``max_backoff_s``; a connection that delivered an event
    resets the delay. It skips any event whose numeric id is not above the last one it yielded,
    except after a ``reset`` (the server's history was restarted: its ids start again).

    Iteration ends at 204 (the agent is done and everything was seen) or, when
    ``stop_at_complete``, after yielding the ``complete`` event. It raises :class:`ApiError` for
    an answer that retrying cannot fix (404, 401, 400), and :class:`ServerUnreachable` once the
    server has been unreachable for ``give_up_s`` (never, if None). ``last_event_id`` survives
    a ``KeyboardInterrupt``: iterating again picks up where it stopped.
    """

    def __init__(self, client: Client, path: str, last_event_id: str | None = None, *,
                 stop_at_complete: bool = True, backoff_s: float = 0.2,
                 max_backoff_s: float = 5.0, give_up_s: float | None = 60.0,
                 idle_timeout: float = STREAM_IDLE_TIMEOUT_S, deadline: float | None = None,
                 on_reconnect: Callable[[float, BaseException | None], None] | None = None,
                 on_connect: Callable[[int], None] | None = None) -> None:
        self.client = client
        self.path = path
        self.last_event_id = last_event_id or ""
        self.stop_at_complete = stop_at_complete
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.give_up_s = give_up_s
        self.idle_timeout = idle_timeout
        #: A ``time.monotonic()`` after which iteration raises :class:`StreamTimeout`.
        self.deadline = deadline
        #: Called with (delay, cause) before each wait to reconnect; cause None: the server
        #: ended the response without a reason.
        self.on_reconnect = on_reconnect
        #: Called with the attempt number (0 for the first) once a connection is open.
        self.on_connect = on_connect
        self.connections = 0
        self.done = False
        self._last_id = int(self.last_event_id) if self.last_event_id.isdigit() else -1

    def __iter__(self) -> Iterator[SSEEvent]:
        delay = self.backoff_s
        down_since: float | None = None
        attempt = 0
        while not self.done:
            cause: BaseException | None = None
            delivered = False
            timeout = self.idle_timeout
            if self.deadline is not None:
                timeout = min(timeout, self.deadline - time.monotonic())
                if timeout <= 0:
                    raise StreamTimeout(f"no end of {self.path} before the deadline")
            try:
                stream = self.client.open_stream(self.path, self.last_event_id or None, timeout)
            except ServerUnreachable as exc:
                stream, cause = None, exc
                down_since = down_since if down_since is not None else time.monotonic()
                if self.give_up_s is not None and time.monotonic() - down_since > self.give_up_s:
                    raise
            except ApiError as exc:
                if exc.status == 401 and self.client.renew_token():
                    continue  # a restarted server with a new token: go on with it
                if exc.status != 503:
                    raise
                stream, cause = None, exc
                delay = max(delay, exc.retry_after)
            if stream is not None:
                down_since = None
                self.connections += 1
                if self.on_connect is not None:
                    self.on_connect(attempt)
                try:
                    if stream.status == 204:
                        self.done = True
                        return
                    for event in stream:
                        if event.event == "reset":
                            self._last_id = -1
                        if event.id is not None:
                            self.last_event_id = event.id
                            if event.id.isdigit():
                                number = int(event.id)
                                if number <= self._last_id:
                                    continue  # seen already: a server replayed too much
                                self._last_id = number
                        delivered = True
                        yield event
                        if self.stop_at_complete and event.event == "complete":
                            self.done = True
                            return
                except (OSError, http.client.HTTPException) as exc:
                    cause = exc
                finally:
                    stream.close()
            if delivered:
                delay = self.backoff_s
            attempt += 1
            if self.on_reconnect is not None:
                self.on_reconnect(delay, cause)
            if self.deadline is not None:
                delay = max(0.0, min(delay, self.deadline - time.monotonic()))
            time.sleep(delay)  # a client waiting to reconnect: nothing else to do meanwhile
            delay = min(self.max_backoff_s, delay * 2)
