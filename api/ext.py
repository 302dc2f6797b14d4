"""How views reach the supervisor: through ``current_app.extensions``, never a module global."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from supervisor.config import Config
from supervisor.registry import Registry

from .errors import ApiError
from .sse import SSEManager

EXTENSION = "agent_supervisor"


@dataclass
class Supervisor:
    """What ``create_app`` builds and keeps in ``app.extensions["agent_supervisor"]``."""

    config: Config
    registry: Registry
    streams: SSEManager
    #: The registry was made by ``create_app``: closing the app shuts it down.
    owns_registry: bool = False
    closed: bool = False

    def close(self, grace: float | None = None) -> None:
        """Stop an owned registry's agents, then end the streams (see ``api.close_app``)."""
        if self.closed:
            return
        self.closed = True
        if self.owns_registry:
            self.registry.shutdown(grace)
        self.streams.close()


def current() -> Supervisor:
    ext: Supervisor = current_app.extensions[EXTENSION]
    return ext


def read_json(required: bool = True) -> Any:
    """The request body as JSON; 400 ``invalid_json`` if it is not (nested past the parser's
    recursion limit included), 413 past ``max_body_bytes`` (chunked bodies too), 408 if it
    stops arriving (the server's ``request_timeout_s``), 400 ``incomplete_body`` if it ends
    before its ``Content-Length`` or its chunked encoding is broken."""
    raw = _read_body(current().config.max_body_bytes)
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "a JSON body is required")
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc


def _read_body(limit: int) -> bytes:
    """At most ``limit`` bytes of body, read from pywsgi's input (which ends at the
    Content-Length or after the last chunk); raises :class:`ApiError` past it."""
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, "body_too_large", f"request body too large (the limit is {limit} bytes)")
    stream = request.environ["wsgi.input"]
    parts: list[bytes] = []
    total = 0
    try:
        while total <= limit:
            part = stream.read(min(1 << 16, limit + 1 - total))
            if not part:
                break
            parts.append(part)
            total += len(part)
    except TimeoutError:
        raise ApiError(408, "request_timeout", "the request body stopped arriving before its end",
                       {"Connection": "close"}) from None
    except OSError:  # pywsgi: "unexpected end of file", broken chunks
        raise ApiError(400, "incomplete_body", "the request body ended early or its chunked encoding is broken",
                       {"Connection": "close"}) from None
    if total > limit:
        raise ApiError(413, "body_too_large", f"request body too large (the limit is {limit} bytes)",
                       {"Connection": "close"})
    return b"".join(parts)
