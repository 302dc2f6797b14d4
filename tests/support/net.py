"""Plain HTTP/1.1 on a fresh socket per request, a free port, and a TCP proxy that cuts on cue.

Raw sockets on purpose: the tests check bytes on the wire (frames, headers, the end of a
response).
"""
from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: Request headers; a header given as None is not sent (to leave out one a helper adds).
Headers = Mapping[str, str | None] | None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(url: str, method: str = "GET", path: str = "/", body: Any = None, headers: Headers = None,
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
    assert parts.hostname is not None and parts.port is not None
    # latin-1: a header's characters are its bytes (a test that means UTF-8 encodes first).
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data
    return parse_response(exchange(parts.hostname, parts.port, request, timeout))


def exchange(host: str, port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as it is on a fresh connection and read until the server closes it."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> Response:
    """A whole HTTP response as received: status, headers (lowercased names), the body
    (de-chunked)."""
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


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
