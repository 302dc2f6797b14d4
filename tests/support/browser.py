"""Helpers for the browser tests: Debian's Chromium under Playwright, screenshots, a TCP proxy,
another web site on 127.0.0.1.

Chromium comes from the system (``apt-get install chromium``), never from ``playwright
install``. Under CI (``CI=true``) a missing browser fails the tests; elsewhere they are skipped
with a message that says what to install.

:class:`TcpProxy` sits between the browser and the real server so a test can cut every
connection at a moment of its choosing and hold reconnections until it is ready: the cleanest
way to make "the server dropped the connection" happen on cue without a test-only endpoint.

:class:`OtherSite` is some other web server on another port of 127.0.0.1 (a dev server, an
attacker's page): it serves the pages it is given and records every request the browser sends
it, headers included, so a test can say what reached it.
"""
from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import ROOT
from .net import TcpProxy

STATIC_DIR = ROOT / "static"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    "the browser tests need Debian's Chromium at /usr/bin/chromium "
    "(apt-get install -y chromium chromium-driver) and Python Playwright "
    "(pip install -e '.[test]'); never `playwright install`"
)

#: Viewport of every page: the laptop screen the dashboard is designed for.
VIEWPORT = {"width": 1280, "height": 800}

#: Default deadline (ms) for Playwright waits on the page.
WAIT_MS = 15_000


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require_browser() -> None:
    """Fail (CI) or skip (elsewhere) unless Chromium and Playwright are both available."""
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} is missing")
    try:
        import playwright.sync_api  # noqa: F401  (only checking that it imports)
    except ImportError:
        missing.append("the playwright package is missing")
    if missing:
        message = f"{'; '.join(missing)}: {INSTALL_HINT}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def output_dir() -> Path:
    """Where screenshots go: ``$CI_OUTPUT_DIR``, default ``./ci-output``; created if needed."""
    path = Path(os.environ.get("CI_OUTPUT_DIR") or "ci-output")
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot of ``page`` as ``<output dir>/<name>.png`` for a person to look at."""
    path = output_dir() / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    """``shot(page, name)``: :func:`screenshot` as a fixture, for test modules that only use fixtures."""
    return screenshot


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session (pages get a fresh context each)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class PageErrors:
    """Uncaught exceptions of a page; a test fails if it leaves any (the leak check for JS)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, error: Any) -> None:
        self.errors.append(str(error))


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (own cookies and sessionStorage) at 1280x800."""
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(WAIT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A page that fails the test if any script on it throws an uncaught exception."""
    pg = context.new_page()
    errors = PageErrors()
    pg.on("pageerror", errors)
    yield pg
    if errors.errors:
        pytest.fail(f"uncaught errors in the page: {errors.errors}", pytrace=False)


@pytest.fixture
def static_page(page: Any) -> Any:
    """A page on a made-up origin that serves ``static/`` from disk, for the pure JS modules.

    No server is involved: ``import('/static/ansi.js')`` in ``page.evaluate`` loads the file.
    """

    def serve(route: Any) -> None:
        path = route.request.url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
        if path.startswith("static/") and (STATIC_DIR / path[7:]).is_file():
            file = STATIC_DIR / path[7:]
            ctype = "text/javascript" if file.suffix == ".js" else "text/plain"
            route.fulfill(status=200, body=file.read_bytes(), headers={"Content-Type": ctype})
        elif path == "":
            route.fulfill(status=200, body="<!doctype html><title>t</title>", content_type="text/html")
        else:
            route.fulfill(status=404, body="")

    page.route("http://modules.test/**", serve)
    page.goto("http://modules.test/")
    return page


@dataclass(frozen=True)
class SeenRequest:
    """One request as :class:`OtherSite` received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]


class OtherSite:
    """A plain HTTP server on a free port of 127.0.0.1: serves ``pages`` (path -> HTML; any
    other path gets a small page), one request per connection, and keeps every request in
    ``requests``."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.requests: list[SeenRequest] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                site.requests.append(SeenRequest("GET", self.path, list(self.headers.items())))
                body = site.pages.get(self.path.split("?", 1)[0], "<!doctype html><title>another site</title>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy_to() -> Iterator[Any]:
    """``proxy_to(url)`` -> a :class:`TcpProxy` in front of a server URL, closed after the test."""
    proxies: list[TcpProxy] = []

    def make(url: str, rcvbuf: int | None = None) -> TcpProxy:
        host, port = url.split("://", 1)[1].rstrip("/").rsplit(":", 1)
        proxy = TcpProxy(host, int(port), rcvbuf)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()

