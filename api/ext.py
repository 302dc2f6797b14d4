"""How views reach the supervisor: through ``current_app.extensions``, never a module global."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from supervisor.config import Config
from supervisor.registry import Registry
from supervisor.reload import Reloader

from .errors import ApiError
from .sse import SSEManager
from .sse.screens import ScreenStreams

EXTENSION = "agent_supervisor"


@dataclass
class Supervisor:
    """What ``create_app`` builds and keeps in ``app.extensions["agent_supervisor"]``."""

    config: Config
    registry: Registry
    streams: SSEManager
    #: Reloads the config file's agents (``POST /api/reload``, SIGHUP).
    reloader: Reloader
    #: The agents' screen streams (``/api/agents/<name>/screen/stream``).
    screens: ScreenStreams
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
        self.screens.close()


def current() -> Supervisor:
    ext: Supervisor = current_app.extensions[EXTENSION]
    return ext


def read_json(required: bool = True) -> Any:
    """The request body as JSON; 400 ``invalid_json`` if it is not (nested past the parser's
    recursion limit included, or a string that is not Unicode text), 413 past
    ``max_body_bytes`` (chunked bodies too), 408 if it stops arriving (the server's
    ``request_timeout_s``), 400 ``incomplete_body`` if it ends before its ``Content-Length`` or
    its chunked encoding is broken."""
    raw = _read_body(current().config.max_body_bytes)
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "a JSON body is required")
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    # Only a \u escape can make a lone surrogate (UTF-8 bytes that encode one are refused by
    # the decoder): without one, there is nothing to look for.
    if b"\\u" in raw:
        where = unencodable_string(value)
        if where is not None:
            raise ApiError(400, "invalid_json", f"the body is not valid JSON text: the string at {where[:120]}"
                           " has a lone surrogate escape (such as \\ud800), which is not a character")
    return value


def unencodable_string(value: Any) -> str | None:
    """Where in ``value`` (parsed JSON) a string (a key or a value) holds a lone surrogate,
    which no UTF-8 text can carry (agents' argv, environment, input and history all are):
    ``'command[1]'``, ``'env.KEY'``, ``'the body'``; None when there is none. Iterative, so
    any depth the parser accepted is walked without recursion."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and not _encodable(item):
                return path or "the top"
        elif isinstance(item, list):
            stack.extend((element, f"{path}[{index}]") for index, element in enumerate(item))
        elif isinstance(item, dict):
            for key, element in item.items():
                if not key.isascii() and not _encodable(key):
                    return f"a key of {path or 'the body'}"
                stack.append((element, f"{path}.{key}" if path else key))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
