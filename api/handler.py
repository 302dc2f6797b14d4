"""gevent's WSGI handler, taught to hand a connection over to the SSE manager and to answer
malformed or stalled requests with a JSON error instead of an empty page or a hang.

A stream's connection outlives its request: once the response head and the history replay are
written, :class:`~api.sse.SSEManager` owns the socket and feeds it from one writer loop
for all clients, and the request's greenlet ends. ``environ[DETACH_KEY]()`` performs the
hand-over: pywsgi then neither writes a response nor closes the socket.

What pywsgi refuses before the application runs (a garbage request line, a URL longer than
its 8 KiB line limit, a header line over 64 KiB or more than 100 of them, a bad
``Content-Length``) gets ``{"error": {code, message}}`` with 400, 414 or 431. So does a request
whose framing RFC 9112 calls invalid, which pywsgi would take a guess at (:func:`framing_error`):
an HTTP/1.1 request without ``Host``, two ``Host`` lines, ``Content-Length`` lines that
disagree, a ``Transfer-Encoding`` that does not end in ``chunked`` (the body's end is unknown)
or one in HTTP/1.0: 400; a transfer coding other than ``chunked`` alone: 501. A guess is how
request smuggling starts: a proxy in front that guessed otherwise sees another request. Every read has a
deadline: a kept-alive connection waits :data:`IDLE_TIMEOUT_S` for its next request, and a
request head or body that stalls for ``request_timeout_s`` gets ``408`` (the body's, from
:func:`api.ext.read_json`) and the connection is closed. A body the application did not read
is not read either, to find the next request: the connection is closed after the response.
Closing lingers (drains what the client still sends, briefly), so that the kernel does not
answer unread bytes with a reset that would destroy the response before the client reads it.

The access log is pywsgi's, minus secrets: the token, however a request line spells it, and
any ``token`` parameter are masked (:class:`api.redact.Redactor`).
"""
from __future__ import annotations

import json
import socket
import time
from typing import Any

from gevent.pywsgi import WSGIHandler
from gevent.socket import socket as GeventSocket

from .redact import Redactor
from .security import BASE_HEADERS

DETACH_KEY = "agent_supervisor.detach"

#: How long a kept-alive connection may wait for its next request (nginx waits 60-75 s).
IDLE_TIMEOUT_S = 60.0
#: Closing a connection with unread input drains at most this much, for at most this long.
LINGER_BYTES = 1 << 20
LINGER_S = 1.0
#: Longest request line kept for the access log.
LOGGED_REQUEST_LINE = 2048

_REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long", 500: "Internal Server Error",
            431: "Request Header Fields Too Large", 501: "Not Implemented"}


class FramingError(ValueError):
    """A request head whose framing is invalid (RFC 9112): refused before the application."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def framing_error(version: str, headers: Any) -> FramingError | None:
    """What is wrong with a request head's framing (``headers`` as pywsgi parsed them, before
    it acted on them), or None. See the module docstring."""
    hosts = headers.get_all("Host") or []
    if len(hosts) > 1:
        return FramingError(400, "bad_request", "more than one Host header")
    if not hosts and version == "HTTP/1.1":
        return FramingError(400, "bad_request", "an HTTP/1.1 request needs a Host header")
    lengths = {value.strip() for value in headers.get_all("Content-Length") or []}
    if len(lengths) > 1:
        return FramingError(400, "bad_request", "Content-Length headers that disagree")
    codings = [c.strip().lower() for v in headers.get_all("Transfer-Encoding") or [] for c in v.split(",")]
    if codings:
        if version != "HTTP/1.1":
            return FramingError(400, "bad_request", f"Transfer-Encoding is not allowed in {version[:10]}")
        if codings[-1] != "chunked" or codings.count("chunked") > 1:
            return FramingError(400, "bad_request", "Transfer-Encoding must end in chunked, once:"
                                " otherwise the end of the body cannot be known")
        if len(codings) > 1:
            return FramingError(501, "unsupported_transfer_coding",
                                f"transfer codings other than chunked are not supported: {', '.join(codings[:-1])[:80]}")
    return None


def error_response(status: int, code: str, message: str) -> bytes:
    """A whole HTTP response carrying the API's JSON error body, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode() + b"\n"
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close",
            *(f"{name}: {value}" for name, value in BASE_HEADERS)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _client_error(ex: BaseException) -> tuple[int, str, str]:
    """(status, code, message) for a request pywsgi could not parse."""
    if isinstance(ex, FramingError):
        return ex.status, ex.code, ex.message
    if isinstance(ex, TimeoutError):
        return 408, "request_timeout", "the request head did not arrive in time"
    text = str(ex)
    if "Line too long" in text or "more than 100 headers" in text:
        return 431, "headers_too_large", "a header line is over 64 KiB, or there are more than 100 headers"
    if "Content-Length" in text or "invalid literal for int()" in text:
        return 400, "bad_request", "Content-Length must be a non-negative integer"
    return 400, "bad_request", "malformed HTTP request"


class StreamingHandler(WSGIHandler):
    """A :class:`~gevent.pywsgi.WSGIHandler` whose application may take the socket, whose
    reads have deadlines and whose errors are JSON. Subclass it per server with
    :func:`handler_for` to set ``request_timeout_s``."""

    detached = False
    request_timeout_s = 10.0
    #: Masks the server's token in what is logged (set by :func:`handler_for`).
    redact = Redactor()
    _refusal: tuple[int, str, str] | None = None

    # -- deadlines ---------------------------------------------------------------------------

    def read_requestline(self) -> str:
        self.socket.settimeout(IDLE_TIMEOUT_S)
        line: str = super().read_requestline()
        self.socket.settimeout(self.request_timeout_s)  # the rest of the head, and the body
        return line

    # -- framing -----------------------------------------------------------------------------

    def MessageClass(self, *args: Any) -> Any:  # noqa: N802 (pywsgi's name)
        """The request's headers, parsed by pywsgi and checked for framing here, before
        pywsgi acts on them (it drops ``Content-Length`` when the body is chunked and reads
        the first of several): what was sent is what is judged."""
        headers = super().MessageClass(*args)
        if not headers.status:  # pywsgi reports a malformed head itself
            wrong = framing_error(self.request_version or "", headers)
            if wrong is not None:
                raise wrong
        return headers

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if not self._body_consumed() and not any(k.lower() == "connection" for k, _ in headers):
            headers = [*headers, ("Connection", "close")]
        # Writing: a reader that takes nothing for a whole idle period is gone.
        if self.socket is not None:
            self.socket.settimeout(IDLE_TIMEOUT_S)
        return super().start_response(status, headers, exc_info)

    def _body_consumed(self) -> bool:
        """Whether the request body (if any) was read to its end. Reads pywsgi's ``Input``
        bookkeeping: ``chunk_length`` is 0 once the last chunk was read."""
        body = self.wsgi_input
        if body is None:
            return True
        if body.chunked_input:
            return bool(body.chunk_length == 0)
        return bool(body.position >= (body.content_length or 0))

    def handle_error(self, t: Any, v: Any, tb: Any) -> None:
        if isinstance(v, TimeoutError):  # a client that stopped reading: not a server error
            self.close_connection = True
            self.log_error("(from %s) gave up writing: the client took nothing for %.0f s",
                           self.client_address, IDLE_TIMEOUT_S)
            return
        super().handle_error(t, v, tb)

    # -- malformed requests ------------------------------------------------------------------

    def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes]:
        self._refusal = _client_error(ex)
        status, code, _ = self._refusal
        self.log_error("(from %s) %s %s: %s", self.client_address, status, code,
                       self.redact(str(ex))[:300])
        return str(status), b""

    def handle_one_request(self) -> Any:
        self._refusal = None
        result = super().handle_one_request()
        if not isinstance(result, tuple):
            return result
        # pywsgi refused the request before the application ran: answer in JSON, log, linger.
        status = int(result[0])
        if self._refusal is not None:
            _, code, message = self._refusal
        elif status == 414:
            code, message = "uri_too_long", "the request line is longer than 8 KiB"
        else:
            code, message = "bad_request", "malformed HTTP request"
        self.status = self._orig_status = f"{status} {_REASONS.get(status, 'Error')}"
        try:
            self.socket.sendall(error_response(status, code, message))
            self.time_finish = time.time()
            self.log_request()
            self._linger()
        except OSError:
            pass
        return None  # close

    def _send_error_response_if_possible(self, error_code: int) -> None:
        # pywsgi's last resort (a body with broken chunked encoding; an unexpected error):
        # its bodies are empty or plain text, ours are the API's JSON.
        if self.response_length:
            self.close_connection = True
            return
        if error_code == 500:
            status, code, message = 500, "internal_error", "internal error"
        else:
            status, code, message = self._refusal or (400, "bad_request", "malformed request body")
        body = json.dumps({"error": {"code": code, "message": message}}).encode() + b"\n"
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("Connection", "close"), *BASE_HEADERS]
        try:
            self.start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
            self.write(body)
        except OSError:
            self.close_connection = True

    def _linger(self) -> None:
        """Stop sending, then read and drop what the client still sends (a bounded amount,
        briefly) before the socket is closed, so the response is not lost to a reset."""
        sock = self.socket
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_S
            drained = 0
            while drained < LINGER_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    # -- streams -----------------------------------------------------------------------------

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
        # pywsgi's own version, except that a detached response is not written, and a body
        # the application left unread closes the connection instead of being read through.
        assert self.result is None and self.application is not None and self.environ is not None
        try:
            self.result = self.application(self.environ, self.start_response)
            if not self.detached:
                self.process_result()
                if self.wsgi_input is not None and not self._body_consumed():
                    self.close_connection = True
                    # pywsgi's own flag for "input in an unknown state": its _discard() then
                    # does not try to read the rest (which could be endless).
                    self.wsgi_input._chunked_input_error = True  # type: ignore[attr-defined]
                    self._linger()
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
        return self.redact(line)

    def log_request(self) -> None:
        if self.requestline is not None and len(self.requestline) > LOGGED_REQUEST_LINE:
            self.requestline = self.requestline[:LOGGED_REQUEST_LINE] + "..."
        super().log_request()


def handler_for(request_timeout_s: float, token: str | None = None) -> type[StreamingHandler]:
    """A :class:`StreamingHandler` class whose requests get ``request_timeout_s`` and whose log
    lines never show ``token``."""
    return type("StreamingHandler", (StreamingHandler,),
                {"request_timeout_s": request_timeout_s, "redact": Redactor([token])})
