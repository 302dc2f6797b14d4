"""The token, and CORS: who may use ``/api`` (the checks before it are :mod:`api.security`'s).

A request proves it knows the token in one of two ways, compared in constant time and never
logged (the access log masks it: :class:`api.redact.Redactor`):

- ``Authorization: Bearer <token>``: the command line, scripts, curl, and the browser pages;
- ``?token=<token>``: for clients that cannot set headers (an EventSource, a curl one-liner).

No cookie, on purpose. The pages used to trade the token for a session cookie; but a browser
sends a cookie to every port of its host (cookies ignore ports, and ``SameSite`` sees
127.0.0.1:8151 and 127.0.0.1:3000 as one site), so any other local web server the user
visited received it with each request and could replay it from a program that sends no
``Origin`` for the checks to refuse. A credential that the browser attaches by itself leaves
the origin; so the pages keep the token in ``sessionStorage``, which is per origin (port
included) and per tab, and send it as a header on every ``fetch``. Streams too: the pages read
them with ``fetch`` and a stream reader instead of EventSource, which cannot send a header and
would need the token in its URL (into access logs, proxies' logs, the network panel). See
``static/session.js``.
"""
from __future__ import annotations

import hmac

from flask import Flask, Response, request

from .errors import json_error
from .security import Check


def _same(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def token_ok(expected: str | None) -> bool:
    """True when no token is configured, or the request proves it knows it: the header if
    there is one (it decides alone), else ``?token=``."""
    if not expected:
        return True
    header = request.headers.get("Authorization")
    if header:
        return header[:7].lower() == "bearer " and _same(header[7:].strip(), expected)
    query = request.args.get("token")
    return query is not None and _same(query, expected)


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


def register(app: Flask, token: str | None, origins: tuple[str, ...]) -> Check:
    """Add the CORS headers to ``/api`` answers; return the token check, which
    :func:`api.security.register` runs after the Host and Origin checks."""
    def authenticate() -> Response | None:
        if not request.path.startswith("/api"):
            return None
        if request.method == "OPTIONS" and origins:
            # A preflight never carries credentials; the Origin check already passed it.
            response = Response(status=204)
            response.headers.update(cors_headers(origins, request.headers.get("Origin")))
            return response
        if not token_ok(token):
            return json_error(
                401,
                "unauthorized",
                "a valid token is required: send 'Authorization: Bearer <token>' (see"
                " `agent-supervisor token`), or open the URL the server printed",
                {"WWW-Authenticate": 'Bearer realm="agent-supervisor"'},
            )
        return None

    @app.after_request
    def _cors(response: Response) -> Response:
        if origins and request.path.startswith("/api"):
            response.headers.update(cors_headers(origins, request.headers.get("Origin")))
        return response

    return authenticate
