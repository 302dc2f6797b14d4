"""An agent's virtual screen: ``GET /api/agents/<name>/screen`` (as it is now) and its stream.

The screen is the emulator of :mod:`supervisor.screen`, kept by the agent's
:class:`~supervisor.screen.live.LiveScreen`; the stream is :class:`~api.sse.screens.ScreenStreams`'.
An agent with no screen (``screen: off``, a program that never entered the alternate screen
under ``auto``, a run from before the server started) answers ``404 no_screen``; its stream
waits, with ``no_screen``, until one starts.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from .auth import cors_headers
from .errors import ApiError
from .ext import current
from .handler import DETACH_KEY
from .security import response_headers

bp = Blueprint("screen", __name__, url_prefix="/api/agents")


@bp.get("/<name>/screen")
def show(name: str) -> dict[str, Any]:
    agent = current().registry.get(name)
    live = agent.screen
    live.wait_ready(2.0)  # a screen whose worker is starting is shown, not denied
    screen = live.current
    if screen is None:
        why = {"off": "its screen setting is off",
               "auto": "screen is auto, and the program has not entered the alternate screen"}
        raise ApiError(404, "no_screen", f"agent {name!r} has no screen: {why.get(live.mode, 'it has not started')}")
    return {**screen.snapshot(), "run": live.run}


@bp.get("/<name>/screen/stream")
def stream(name: str) -> Response:
    ext = current()
    agent = ext.registry.get(name)
    refused = ext.screens.over_limit(name)
    if refused:
        raise ApiError(503, "too_many_clients", refused + "; retry later", {"Retry-After": "5"})
    detach = request.environ.get(DETACH_KEY)
    if detach is None:
        raise ApiError(500, "streams_unsupported", "streams need the server's own WSGI server (agent-supervisor serve)")
    headers = [*response_headers(), *cors_headers(ext.config.cors_origins, request.headers.get("Origin")).items()]
    ext.screens.serve(detach(), name=name, live=agent.screen, remote_addr=request.remote_addr or "-",
                      extra_headers=headers)
    return Response(status=200)  # not sent: the connection is no longer pywsgi's
