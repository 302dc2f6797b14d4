"""The SSE endpoints: one agent's stream, and every agent's. The streaming itself is the
:class:`~api.sse.SSEManager`'s; these views only check the request and hand it over."""
from __future__ import annotations

import re

from flask import Blueprint, Response, request

from .auth import cors_headers
from .errors import ApiError
from .ext import current
from .handler import DETACH_KEY
from .security import response_headers

bp = Blueprint("stream", __name__, url_prefix="/api")

_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: \d would take "１２" as 12


def _last_event_id() -> int | None:
    raw = request.headers.get("Last-Event-ID")
    if raw:
        # WSGI hands header bytes over as latin-1: read them as the UTF-8 a client sends (bytes
        # that are not UTF-8 stay one character each, shown as \xNN below).
        try:
            raw = raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
    else:
        raw = request.args.get("last_event_id")
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    if not _ID.fullmatch(raw):
        raise ApiError(400, "invalid_last_event_id",
                       f"Last-Event-ID must be a non-negative integer in ASCII digits, not {shown(raw)}")
    return int(raw)


def shown(value: str, limit: int = 40) -> str:
    """``value`` quoted for an error message, and spelled out in escapes when it is not plain
    ASCII: full-width digits look like digits (``'１２' (\\uff11\\uff12)``)."""
    value = value[:limit]
    quoted = repr(value)
    return quoted if value.isascii() else f"{quoted} ({ascii(value)[1:-1]})"


def _stream(agent: str | None, last_id: int | None) -> Response:
    ext = current()
    refused = ext.streams.over_limit(agent)
    if refused:
        raise ApiError(503, "too_many_clients", refused + "; retry later", {"Retry-After": "5"})
    detach = request.environ.get(DETACH_KEY)
    if detach is None:
        raise ApiError(500, "streams_unsupported", "streams need the server's own WSGI server (agent-supervisor serve)")
    plain = request.args.get("strip_ansi", "").lower() in ("1", "true", "yes")
    headers = [*response_headers(), *cors_headers(ext.config.cors_origins, request.headers.get("Origin")).items()]
    ext.streams.serve(
        detach(),
        agent=agent,
        last_id=last_id,
        remote_addr=request.remote_addr or "-",
        plain=plain,
        extra_headers=headers,
    )
    return Response(status=200)  # not sent: the connection is no longer pywsgi's


@bp.get("/agents/<name>/stream")
def agent_stream(name: str) -> Response:
    ext = current()
    cluster = ext.registry.cluster
    if cluster is not None and name not in ext.registry and cluster.owner(name) is not None:
        active = cluster.active(name)  # another node's agent
    else:
        active = ext.registry.get(name).active
    last_id = _last_event_id()
    log = ext.registry.eventlog
    if last_id is not None and not active and log.last_id(name) <= last_id <= log.last_id():
        # Done, and the client has it all: 204 tells EventSource to stop reconnecting. (An id
        # past anything ever issued is not "has it all" but a wiped data dir: reset, below.)
        return Response(status=204)
    return _stream(name, last_id)


@bp.get("/stream")
def all_stream() -> Response:
    return _stream(None, _last_event_id())
