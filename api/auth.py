"""Bearer-token authentication and CORS, applied to every ``/api`` route.

The token may come as ``Authorization: Bearer <token>`` or, for EventSource which cannot set
headers, as ``?token=``. It is compared in constant time and never logged.
"""
from __future__ import annotations

import hmac

from flask import Flask, Response, request

from .errors import json_error


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.args.get("token")


def token_ok(expected: str | None) -> bool:
    """True when no token is configured, or the request carries the right one."""
    if not expected:
        return True
    presented = _presented_token()
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def cors_headers(origins: tuple[str, ...], origin: str | None) -> dict[str, str]:
    """The CORS headers for a request from ``origin``, or none when it is not allowed."""
    if not origin or not origins:
        return {}
    if "*" in origins:
        allowed = "*"
    elif origin in origins:
        allowed = origin
    else:
        return {}
    return {
        "Access-Control-Allow-Origin": allowed,
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
        "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def register(app: Flask, token: str | None, origins: tuple[str, ...]) -> None:
    @app.before_request
    def _check() -> Response | None:
        if not request.path.startswith("/api"):
            return None
        if request.method == "OPTIONS" and origins:
            response = Response(status=204)
            response.headers.update(cors_headers(origins, request.headers.get("Origin")))
            return response
        if not token_ok(token):
            return json_error(
                401,
                "unauthorized",
                "a valid token is required: send 'Authorization: Bearer <token>' or ?token=",
                {"WWW-Authenticate": 'Bearer realm="agent-supervisor"'},
            )
        return None

    @app.after_request
    def _cors(response: Response) -> Response:
        if origins and request.path.startswith("/api"):
            response.headers.update(cors_headers(origins, request.headers.get("Origin")))
        return response
