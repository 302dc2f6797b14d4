"""gevent's WSGI handler, taught to hand a connection over to the SSE manager.

A stream's connection outlives its request: once the response head and the history replay are
written, :class:`~api.sse_manager.SSEManager` owns the socket and feeds it from one writer loop
for all clients, and the request's greenlet ends. ``environ[DETACH_KEY]()`` performs the
hand-over: pywsgi then neither writes a response nor closes the socket.

The access log is pywsgi's, minus secrets: a ``token=`` in a query string is masked.
"""
from __future__ import annotations

import re
from typing import Any

from gevent.pywsgi import WSGIHandler
from gevent.socket import socket as GeventSocket

DETACH_KEY = "agent_supervisor.detach"

_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*")


def redact(requestline: str) -> str:
    """``requestline`` with the value of any ``token`` query parameter masked."""
    return _TOKEN_IN_QUERY.sub(r"\1***", requestline)


class StreamingHandler(WSGIHandler):
    """A :class:`~gevent.pywsgi.WSGIHandler` whose application may take the socket."""

    detached = False

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        environ[DETACH_KEY] = self._detach
        return environ

    def _detach(self) -> GeventSocket:
        """Give the connection to the caller; pywsgi forgets it (no response, no close).

        The caller gets a new socket object that alone owns the file descriptor: pywsgi's
        request reader keeps a reference to the old object, and while it did, closing that
        object would not have closed the connection (only garbage collection would).
        """
        old: GeventSocket = self.socket
        self.detached = True
        self.socket = None  # type: ignore[assignment]  # pywsgi's own "no socket any more" value
        self.close_connection = True
        return GeventSocket(fileno=old.detach())

    def run_application(self) -> None:
        # pywsgi's own version, except that a detached response is not written.
        assert self.result is None and self.application is not None and self.environ is not None
        try:
            self.result = self.application(self.environ, self.start_response)
            if not self.detached:
                self.process_result()
        finally:
            close = getattr(self.result, "close", None)
            try:
                if close is not None:
                    close()
            finally:
                self.result = None

    def format_request(self) -> str:
        line: str = super().format_request()
        if self.detached:
            line = line.replace('" 000 ', '" 200 ', 1) if '" 000 ' in line else line
        return redact(line)
