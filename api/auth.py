"""The token, and CORS: who may use ``/api`` (the checks before it are :mod:`api.security`'s).

A request proves it knows the token in one of three ways, compared in constant time and never
logged (the access log masks ``token=``):

- ``Authorization: Bearer <token>``: the command line, scripts, curl;
- ``?token=<token>``: for clients that cannot set headers and have no cookie (curl one-liners);
- the session cookie, for the browser pages. ``POST /api/session`` with the token sets it.

Why a cookie for the pages, and not the token in ``sessionStorage``: EventSource cannot send
headers, so a stored token would have to travel in every stream URL (into logs, proxies and
the browser's network panel); a cookie goes with EventSource and ``fetch`` by itself, and one
set ``HttpOnly`` is out of reach of any script, so a script injected into the page cannot carry
the token away. It is ``SameSite=Strict``: no other site's page makes the browser send it.
SameSite does not know ports (another server on 127.0.0.1 is the "same site"), which is why
the Origin and ``Sec-Fetch-Site`` checks of :mod:`api.security` stand in front, and why its
name carries the port: two servers on one host keep apart. Its value is an HMAC of the token,
not the token: a new token (a restart that generated one) ends every old session.
"""
from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Flask, Response, request

from .errors import json_error
from .ext import current
from .security import Check

COOKIE_PREFIX = "agent-supervisor-"
_COOKIE_PURPOSE = b"agent-supervisor browser session v1"

bp = Blueprint("auth", __name__, url_prefix="/api")


def cookie_name(host: str | None) -> str:
    """The session cookie's name for a server reached at ``host`` (``name:port``)."""
    _, colon, port = (host or "").rpartition(":")
    if not (colon and port.isascii() and port.isdigit()):
        port = "443" if request.is_secure else "80"
    return COOKIE_PREFIX + port


def session_value(token: str) -> str:
    """What the session cookie holds for ``token``: a keyed hash, so the token itself is not."""
    return hmac.new(token.encode("utf-8"), _COOKIE_PURPOSE, hashlib.sha256).hexdigest()


def _same(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def token_ok(expected: str | None) -> bool:
    """True when no token is configured, or the request proves it knows it. An explicit
    credential (the header, then ``?token=``) decides alone; the cookie counts without one."""
    if not expected:
        return True
    header = request.headers.get("Authorization")
    if header:
        return header[:7].lower() == "bearer " and _same(header[7:].strip(), expected)
    query = request.args.get("token")
    if query is not None:
        return _same(query, expected)
    cookie = request.cookies.get(cookie_name(request.host))
    return cookie is not None and _same(cookie, session_value(expected))


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


@bp.post("/session")
def login() -> Response:
    """Trade the token (already checked, like on every ``/api`` route) for the page's cookie."""
    token = current().config.token
    response = Response(status=204)
    if token:
        response.set_cookie(cookie_name(request.host), session_value(token), httponly=True,
                            samesite="Strict", secure=request.is_secure, path="/")
    return response


@bp.delete("/session")
def logout() -> Response:
    response = Response(status=204)
    response.delete_cookie(cookie_name(request.host), path="/", httponly=True, samesite="Strict",
                           secure=request.is_secure)
    return response
