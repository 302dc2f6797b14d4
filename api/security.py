"""Defence in depth for a server that runs commands: which requests reach a view at all.

The token (:mod:`api.auth`) says who may act; these checks hold whether there is one or not,
and run first, in this order (:func:`register`):

1. **Host allow-list.** A DNS-rebinding page (``evil.example`` resolving to 127.0.0.1) talks
   to us as its own origin, so the same-origin policy does not protect us: only its ``Host``
   header gives it away. Answered: ``127.0.0.1``, ``localhost``, ``[::1]``, the bound address
   (with any port) and the configured ``allowed_hosts``; on a wildcard bind (``0.0.0.0``,
   ``::``) also any IP literal, since a rebinding attack always uses a name. Else
   ``403 invalid_host``, on every route (as Jupyter Server does).
2. **Origin.** A browser names the page behind a cross-origin request in ``Origin``; on
   ``/api`` only our own origin and ``cors_origins`` pass, else ``403 cross_origin``: a hostile
   page can neither act nor open an EventSource. A request without ``Origin`` that the browser
   marks ``Sec-Fetch-Site: cross-site`` or ``same-site`` (an ``<img>`` or ``<script>`` of
   another page; another port of 127.0.0.1 is the same site) is refused likewise.
3. The token (:mod:`api.auth`), and the CORS preflight it must not require.
4. **JSON only.** A request with a body must say ``Content-Type: application/json`` (else
   ``415 unsupported_media_type``): an HTML form and a ``no-cors`` fetch cannot send that
   type, so neither can act. A declared length past ``max_body_bytes`` is ``413`` at once.

Every response carries :data:`BASE_HEADERS`; pages get a Content-Security-Policy without
inline script and ``frame-ancestors 'none'``, API responses one that allows nothing.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, request

from supervisor.config import Config

from .errors import json_error

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

#: On every response, streams and pywsgi's own error answers included. No referrer: a URL may
#: carry a token. Same-origin resources: no other page may embed our JSON in an <img>/<script>.
BASE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
#: The dashboard and the test page: their own scripts and styles only, no inline script, no
#: framing (clickjacking), no plugins, connections to this server only.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            " connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self';"
            " frame-ancestors 'none'")
#: Everything else (JSON, event streams, static files): nothing runs, nothing frames it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"

Check = Callable[[], "Response | None"]


def response_headers(page: bool = False) -> list[tuple[str, str]]:
    """The security headers of a response: :data:`BASE_HEADERS` and its CSP."""
    return [*BASE_HEADERS, ("Content-Security-Policy", PAGE_CSP if page else API_CSP),
            ("X-Frame-Options", "DENY")]


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header, lowercased, without port or IPv6 brackets; None for a
    header that is not ``name[:port]`` or ``[address][:port]``."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[1:end], header[end + 1:]
    else:
        name, colon, port = header.partition(":")
        rest = colon + port
    if rest and not (rest[0] == ":" and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return name or None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` headers this server answers (see the module docstring)."""

    def __init__(self, bound_host: str, allowed_hosts: tuple[str, ...] = ()) -> None:
        bound = bound_host.strip("[]").lower()
        self.any_host = "*" in allowed_hosts
        self.any_address = bound in ("0.0.0.0", "::", "")
        self.names = {*LOOPBACK_HOSTS, bound, *(h for h in allowed_hosts if not h.startswith("."))}
        self.suffixes = tuple(h for h in allowed_hosts if h.startswith("."))

    def allows(self, header: str | None) -> bool:
        if header is None:
            return True  # only HTTP/1.0 clients omit it, and no browser is one
        name = host_name(header)
        if name is None:
            return False
        if self.any_host or name in self.names:
            return True
        if any(name.endswith(suffix) or name == suffix[1:] for suffix in self.suffixes):
            return True
        return self.any_address and _is_address(name)


def origin_refusal(origin: str | None, fetch_site: str | None, host: str | None,
                   cors_origins: tuple[str, ...]) -> str | None:
    """Why a request to ``/api`` from a browser page is refused, or None when it may pass."""
    if "*" in cors_origins:
        return None
    if origin is None:
        if fetch_site in ("cross-site", "same-site"):
            return "this request comes from another site's page; the API answers its own pages only"
        return None  # a command-line client, or the browser's own same-origin request
    if origin in cors_origins:
        return None
    parts = urlsplit(origin)
    if parts.scheme in ("http", "https") and host is not None and parts.netloc == host.lower():
        return None
    return (f"requests from the page at {origin[:100]!r} are not allowed: only this server's own"
            " pages and the origins listed in cors_origins may call the API")


def _declared_length() -> int | None:
    raw = request.environ.get("CONTENT_LENGTH")
    try:
        return int(raw) if raw else None
    except ValueError:
        return None  # pywsgi refuses those before we run


def body_refusal(max_body_bytes: int) -> Response | None:
    """413 or 415 for a request body that is too large or not JSON; None when there is none."""
    length = _declared_length()
    chunked = bool(request.environ.get("HTTP_TRANSFER_ENCODING"))
    if not chunked and not length:
        return None
    if length is not None and length > max_body_bytes:
        return json_error(413, "body_too_large",
                          f"request body too large (the limit is {max_body_bytes} bytes)")
    if request.mimetype != "application/json":
        shown = request.mimetype or "none"
        return json_error(415, "unsupported_media_type",
                          f"request bodies must be JSON with 'Content-Type: application/json',"
                          f" not {shown[:80]!r}")
    return None


def register(app: Flask, config: Config, authenticate: Check) -> None:
    """Run the checks before every request (``authenticate`` is the token's, third) and add
    the security headers to every response."""
    hosts = HostPolicy(config.host, config.allowed_hosts)
    origins = config.cors_origins

    @app.before_request
    def _guard() -> Response | None:
        host = request.headers.get("Host")
        if not hosts.allows(host):
            shown = (host or "")[:100]
            return json_error(
                403, "invalid_host",
                f"this server does not answer to the name {shown!r} (a DNS-rebinding page looks"
                " like this); if the name is yours, add it to allowed_hosts",
            )
        if request.path.startswith("/api"):
            why = origin_refusal(request.headers.get("Origin"),
                                 request.headers.get("Sec-Fetch-Site"), host, origins)
            if why is not None:
                return json_error(403, "cross_origin", why)
        return authenticate() or body_refusal(config.max_body_bytes)

    default_options = app.make_default_options_response

    def options_response() -> Response:
        # Flask's answer to an OPTIONS (the Allow header), but as what it is: no content.
        response = default_options()
        response.status_code = 204
        return response

    app.make_default_options_response = options_response  # type: ignore[method-assign]

    @app.after_request
    def _headers(response: Response) -> Response:
        if response.status_code == 204:
            response.headers.pop("Content-Type", None)  # nothing to have a type (Response's default)
        # A page's own answers, 304s included: a browser takes a 304's headers for the page it
        # keeps, so a 304 with the API's CSP would stop its scripts on the next load.
        page = request.method in ("GET", "HEAD") and response.mimetype == "text/html"
        for name, value in response_headers(page=page):
            response.headers.setdefault(name, value)
        return response
