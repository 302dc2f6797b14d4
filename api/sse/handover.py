"""The two things a stream does below HTTP: write its own response head, then take the socket.

pywsgi gives the view the connection (see :mod:`api.handler`); from then on the stream writes
the bytes itself. :func:`open_response` sets the socket up and writes the head and the first
frames in one ``sendall``; :func:`take_socket` turns the gevent socket into a plain
non-blocking one that the manager's hub callbacks write to directly.
"""
from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

#: A replaying client that takes no bytes for this long is given up.
REPLAY_WRITE_TIMEOUT_S = 30.0

_HEAD = (
    "HTTP/1.1 200 OK",
    "Content-Type: text/event-stream; charset=utf-8",
    "Cache-Control: no-cache",
    "X-Accel-Buffering: no",
    "Connection: close",
)


def response_head(extra_headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The status line and headers of every stream, and the blank line after them."""
    lines = [*_HEAD, *(f"{k}: {v}" for k, v in extra_headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def open_response(gsock: Any, extra_headers: Iterable[tuple[str, str]], first: bytes) -> None:
    """Write the head and ``first`` (``retry:``, ``connected``) on ``gsock``, a gevent socket.
    Blocks the calling greenlet only; raises ``OSError`` if the client is gone."""
    # Writes are batched already; Nagle's algorithm would only add delayed-ACK waits.
    gsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    gsock.settimeout(REPLAY_WRITE_TIMEOUT_S)
    gsock.sendall(response_head(extra_headers) + first)


def take_socket(gsock: Any) -> socket.socket:
    """A plain non-blocking socket that alone owns ``gsock``'s connection (``gsock`` is left
    without one)."""
    sock = socket.socket(fileno=gsock.detach())
    sock.setblocking(False)
    return sock


def eof_reason(sock: socket.socket) -> str | None:
    """Read what a stream's client sent (meaningless: it is read only to notice EOF) and say
    why to close, if it is time to: the peer closed, or the read failed. None: keep going."""
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return None
    except OSError as exc:
        return f"read failed: {exc.strerror or exc}"
    return None if data else "client disconnected"
