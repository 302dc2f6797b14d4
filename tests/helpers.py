"""Test helpers: a real server in a subprocess, a raw HTTP client, a raw SSE reader, a TCP proxy.

Raw sockets on purpose: the tests check bytes on the wire (frames, headers, the end of a
response), and a reader that stops reading is how a slow consumer is made. Every wait has a
deadline; nothing here sleeps to synchronise.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(url: str, method: str = "GET", path: str = "/", body: Any = None, headers: dict[str, str] | None = None,
         raw_body: bytes | None = None, timeout: float = 10.0) -> Response:
    """One HTTP/1.1 request on a fresh connection (``Connection: close``). A body, ``raw_body``
    included, is sent as ``application/json`` unless ``headers`` name another Content-Type; a
    header given as None is left out."""
    parts = urlsplit(url)
    data = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
    given = {k.lower(): v for k, v in (headers or {}).items()}
    head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
            f"Content-Length: {len(data)}"]
    if data and "content-type" not in given:
        head.append("Content-Type: application/json")
    head += [f"{k}: {v}" for k, v in (headers or {}).items() if v is not None and k.lower() != "host"]
    if "host" in given:
        head[1] = f"Host: {given['host']}"
        if given["host"] is None:
            del head[1]
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head_raw, _, rest = raw.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding") == "chunked":
        rest = _dechunk(rest)
    return Response(status, hdrs, rest)


def _dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2:]
    return b"".join(out)


@dataclass
class SSEEvent:
    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEStream:
    """A raw SSE connection: parses frames as a browser would (CRLF/LF/CR, multi-line data)."""

    def __init__(self, url: str, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0,
                 rcvbuf: int | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((parts.hostname, parts.port))
        head = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items() if v is not None]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        self.buffer = b""
        self.raw = bytearray()  # every body byte received, for frame-level assertions
        self.closed = False
        self.retry: int | None = None
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        head_raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head_raw.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines and lines[0] else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.raw += self.buffer
        self._pending = self.buffer

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no SSE data before the deadline")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            return False
        self.raw += chunk
        self._pending += chunk
        return True

    def next(self, timeout: float = 10.0) -> SSEEvent | None:
        """The next dispatched event, or None when the server ended the response."""
        deadline = time.monotonic() + timeout
        while True:
            event = self._parse_one()
            if event is not None:
                return event
            if self.closed or not self._fill(deadline):
                return None

    def _parse_one(self) -> SSEEvent | None:
        while True:
            text = self._pending
            # A frame ends with a blank line in any of the three line-break styles.
            ends = [i for i in (text.find(b"\n\n"), text.find(b"\r\n\r\n"), text.find(b"\r\r")) if i >= 0]
            if not ends:
                return None
            end = min(ends)
            sep = 4 if text[end:end + 4] == b"\r\n\r\n" else 2
            block, self._pending = text[:end], text[end + sep:]
            fields: dict[str, list[str]] = {}
            for line in block.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n"):
                if not line or line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
            if "retry" in fields:
                self.retry = int(fields["retry"][-1])
            if "data" not in fields:
                continue
            return SSEEvent(fields.get("event", ["message"])[-1], "\n".join(fields["data"]),
                            fields.get("id", [None])[-1])

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
        """Whether a whole frame is already buffered (so select() would not say so)."""
        return b"\n\n" in self._pending or b"\r\r" in self._pending or b"\r\n\r\n" in self._pending

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> SSEStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Server:
    """A real ``agent-supervisor serve`` in a subprocess, on a loopback port of its own."""

    data_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str | None = None

    def start(self, timeout: float = 20.0) -> Server:
        cmd = [sys.executable, "-m", "supervisor", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.log_path = self.data_dir.parent / f"server-{self.data_dir.name}.log"
        self._log = open(self.log_path, "ab")
        # Unbuffered: a readline must not swallow the lines after it, or select() would not
        # see them (the banner after "serving on" is read by some tests).
        self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, env=env, bufsize=0)
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                line = self.process.stdout.readline()
                if b"serving on" in line or not line:
                    break
            if self.process.poll() is not None:
                break
        if b"serving on" not in line:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log_path.read_text()[-3000:]}")
        self.url = line.decode().split("serving on", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        if self.token is None and "--no-token" not in self.args:
            # A generated token: the runtime file has it (the user's own way to find it).
            self.token = json.loads((self.data_dir / "server.json").read_text())["token"]
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        code = self.process.returncode
        if self.process.stdout:
            self.process.stdout.close()
        self._log.close()
        self.process = None
        return code

    def auth(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        """``headers`` plus the token, unless they carry an Authorization of their own (a
        header given as None is not sent)."""
        h = dict(headers or {})
        if self.token:
            h.setdefault("Authorization", f"Bearer {self.token}")
        return h

    @property
    def dashboard(self) -> str:
        """The address a person opens: the dashboard with ``?token=`` (as ``serve`` prints it)."""
        return f"{self.url}/?token={self.token}" if self.token else f"{self.url}/"

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, **kw: Any) -> Response:
        return http(self.url, method, path, body, self.auth(headers), **kw)

    def get(self, path: str, **kw: Any) -> Any:
        response = self.request("GET", path, **kw)
        assert response.status == 200, (response.status, response.body[:500])
        return response.json()

    def create(self, **agent: Any) -> dict[str, Any]:
        response = self.request("POST", "/api/agents", agent)
        assert response.status == 201, (response.status, response.body[:500])
        return response.json()  # type: ignore[no-any-return]

    def stream(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> SSEStream:
        return SSEStream(self.url, path, self.auth(headers), **kw)

    def wait_state(self, name: str, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        return wait_for(lambda: (a := self.get(f"/api/agents/{name}"))["state"] in states and a,
                        timeout, 0.02, f"agent {name} in {states}")  # type: ignore[no-any-return]


def python_agent(code: str) -> list[str]:
    """An argv that runs ``code`` in a fresh, unbuffered Python."""
    return [sys.executable, "-u", "-c", code]


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


class TcpProxy:
    """A loopback TCP proxy to ``target``: ``drop()`` cuts every live connection, ``hold()``
    keeps new ones waiting (accepted, not forwarded) until ``release()``, ``stall()`` stops
    passing the server's bytes on (so the server sees a client that does not read) until
    ``flow()``. ``target`` may be changed between connections (a new server).

    ``rcvbuf`` shrinks the receive buffer of the upstream sockets, so a stalled connection
    backs up into the server after kilobytes rather than megabytes.

    Threads, not asyncio: Playwright's sync API owns the test thread. ``close()`` stops
    everything; use it in a ``finally``.
    """

    def __init__(self, target_host: str, target_port: int, rcvbuf: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.rcvbuf = rcvbuf
        self._flowing = threading.Event()
        self._flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self.accepted = 0
        self.heads: list[str] = []  # the first bytes each client sent: its request head
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._conns.append(client)
        # While held, the browser's connection stays open and unanswered: it keeps waiting.
        self._open.wait()  # close() sets it too
        if self._closed:
            client.close()
            return
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        try:
            upstream.settimeout(5)
            upstream.connect(self.target)
        except OSError:
            upstream.close()
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._conns.append(upstream)
        threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()
        self._pipe(client, upstream, False)

    def _pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        first = not downstream
        try:
            while True:
                if downstream:
                    self._flowing.wait()
                data = src.recv(65536)
                if not data:
                    break
                if first:
                    self.heads.append(data.decode("latin-1"))
                    first = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stream_heads(self) -> list[str]:
        """Request heads of the stream requests that went through, oldest first."""
        return [head for head in self.heads if "/stream" in head.split("\r\n", 1)[0]]

    def drop(self) -> int:
        """Cut every connection now (both sides see it end); returns how many were cut."""
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        return len(conns)

    def hold(self) -> None:
        """Accept new connections but do not forward them until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def stall(self) -> None:
        """Stop reading from the server (bytes already passed on stay passed on)."""
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self._open.set()
        self._flowing.set()
        self.listener.close()
        self.drop()
