"""Hostile pages in a real headless Chromium try to run a command and read an agent's events.

The attacker's pages come from a server of their own on another port of 127.0.0.1, reached
both as ``127.0.0.1:<port>`` (another origin of the same site: a cookie would go along) and as
``evil.test:<port>`` (a made-up name that Chromium's ``--host-resolver-rules``
maps to 127.0.0.1). DNS rebinding is played for real: ``rebind.test:<port>`` is a TCP proxy
that first forwards to the attacker's server (the page loads) and then to the victim (the
name "now resolves" elsewhere), so the page's same-origin requests reach our server.

Each attack is tried against a server with a generated token, in a browser tab that signed in
on the dashboard (the strongest position: the tab holds the token), and against one started with
``--no-token``: the Host, Origin and media-type checks must hold without the token. Every
test asserts that the request reached the server and was refused, that no agent was created
and its command's marker file does not exist, and that the page read no event.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.browser import OtherSite
from support.net import TcpProxy
from support.processes import Server, python_agent
from support.waiting import wait_for

pytestmark = pytest.mark.browser

SECRET = "SECRET-LINE-42"
RESOLVER = "--host-resolver-rules=MAP evil.test 127.0.0.1, MAP rebind.test 127.0.0.1"


@pytest.fixture(scope="module")
def attacker() -> Iterator[OtherSite]:
    """The attacker's own web server, on another port of 127.0.0.1."""
    site = OtherSite()
    yield site
    site.close()


@pytest.fixture(scope="module")
def hostile_browser(browser: Any) -> Iterator[Any]:
    """A Chromium of its own, with the made-up names resolving to 127.0.0.1."""
    from support.browser import CHROMIUM, CHROMIUM_ARGS

    other = browser.browser_type.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, RESOLVER])
    yield other
    other.close()


@pytest.fixture(scope="module", params=["token", "no-token"])
def victim(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with an agent whose history holds a secret line; with a generated token, or
    with ``--no-token``."""
    base = tmp_path_factory.mktemp(f"victim-{request.param}")
    server = Server(base / "data", ["--no-token"] if request.param == "no-token" else [], {"HOME": str(base)})
    server.start()
    server.create(name="victim", command=python_agent(f"print('{SECRET}')\nimport time\ntime.sleep(300)"))
    with server.stream("/api/agents/victim/stream") as stream:
        stream.until(lambda e: SECRET in e.data)
    yield server
    server.request("POST", "/api/agents/victim/stop", {"grace_s": 0})
    server.stop()


@pytest.fixture
def victim_page(hostile_browser: Any, victim: Server) -> Iterator[Any]:
    """A page in a fresh context; with a token, the page first signs in on the dashboard (the
    tab holds the token in sessionStorage, where nothing but the dashboard's own origin reads
    it, and the browser holds no cookie for any request to carry)."""
    from support.browser import VIEWPORT

    context = hostile_browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    page = context.new_page()
    if victim.token:
        page.goto(victim.dashboard)
        page.wait_for_function("() => window.agentSupervisor && window.agentSupervisor.loggedInFromAddress")
        assert page.evaluate("() => sessionStorage.getItem('agent-supervisor-token')") == victim.token
        assert context.cookies() == []
    try:
        yield page
    finally:
        context.close()


def attacker_origin(attacker: OtherSite, where: str) -> str:
    return f"http://{'127.0.0.1' if where == 'port' else 'evil.test'}:{attacker.port}"


def assert_nothing_ran(victim: Server, name: str, marker: Path) -> None:
    agents = [a["name"] for a in victim.get("/api/agents")["agents"]]
    assert name not in agents, agents
    assert not marker.exists()


def refused_in_log(victim: Server, method: str, path: str, count: int = 1) -> None:
    """The attack reached the server and was refused (403, 415 or 401): not lost on the way."""
    def refused() -> int:
        return sum(1 for line in victim.log_path.read_text().splitlines()
                   if f'"{method} {path} HTTP/1.1" 40' in line)
    wait_for(lambda: refused() >= count, 10, what=f"the refused {method} {path} in the server log")


def create_body(name: str, marker: Path) -> str:
    return f'{{"name": "{name}", "command": ["touch", "{marker}"]}}'


# ------------------------------------------------------------------ another origin


@pytest.mark.slow
@pytest.mark.parametrize("where", ["port", "name"])
def test_no_cors_text_plain_post_runs_nothing(victim_page: Any, victim: Server, attacker: OtherSite,
                                             tmp_path: Path, where: str) -> None:
    """A ``no-cors`` text/plain fetch (a "simple" request, no preflight) creates nothing."""
    marker = tmp_path / "nocors"
    name = f"nocors-{where}"
    victim_page.goto(attacker_origin(attacker, where) + "/")
    before = victim.log_path.read_text().count('"POST /api/agents HTTP/1.1" 40')
    result = victim_page.evaluate(
        """async ([url, body]) => {
             try {
               const r = await fetch(url, {method: 'POST', mode: 'no-cors', body,
                                           headers: {'Content-Type': 'text/plain'}, credentials: 'include'});
               return r.type;
             } catch (e) { return 'blocked: ' + e.name; }
           }""", [f"{victim.url}/api/agents", create_body(name, marker)])
    # Opaque at best; Chromium drops it altogether (Cross-Origin-Resource-Policy: same-origin).
    assert result in ("opaque", "blocked: TypeError")
    refused_in_log(victim, "POST", "/api/agents", before + 1)
    assert_nothing_ran(victim, name, marker)


@pytest.mark.parametrize("where", ["port", "name"])
def test_text_plain_form_runs_nothing(victim_page: Any, victim: Server, attacker: OtherSite,
                                      tmp_path: Path, where: str) -> None:
    """A plain HTML ``<form enctype="text/plain">`` (no script at all) creates nothing."""
    marker = tmp_path / "form"
    name = f"form-{where}"
    # text/plain forms send name=value: the name holds the JSON, the value closes it.
    field = create_body(name, marker)[:-1] + ', "pad": "'
    attacker.pages[f"/form-{where}.html"] = (
        f"<!doctype html><form method=post enctype=text/plain action='{victim.url}/api/agents' target=sink>"
        f"<input type=hidden name='{field}' value='\"}}'><button id=go>win a prize</button></form>"
        "<iframe name=sink></iframe>"
    )
    victim_page.goto(attacker_origin(attacker, where) + f"/form-{where}.html")
    with victim_page.expect_response(lambda r: r.url == f"{victim.url}/api/agents") as answer:
        victim_page.click("#go")
    assert answer.value.status in (403, 415)
    assert_nothing_ran(victim, name, marker)


@pytest.mark.parametrize("where", ["port", "name"])
def test_json_fetch_is_stopped_by_its_preflight(victim_page: Any, victim: Server, attacker: OtherSite,
                                                tmp_path: Path, where: str) -> None:
    """A JSON fetch needs a CORS preflight; it is refused, so the POST is never even sent."""
    marker = tmp_path / "json"
    name = f"json-{where}"
    victim_page.goto(attacker_origin(attacker, where) + "/")
    outcome = victim_page.evaluate(
        """async ([url, body]) => {
             try {
               const r = await fetch(url, {method: 'POST', body, credentials: 'include',
                                           headers: {'Content-Type': 'application/json'}});
               return 'read ' + r.status + ' ' + (await r.text());
             } catch (e) { return 'blocked: ' + e.name; }
           }""", [f"{victim.url}/api/agents", create_body(name, marker)])
    assert outcome == "blocked: TypeError"
    refused_in_log(victim, "OPTIONS", "/api/agents")
    assert_nothing_ran(victim, name, marker)


@pytest.mark.parametrize("where", ["port", "name"])
def test_event_source_on_the_agents_stream_reads_nothing(victim_page: Any, victim: Server, attacker: OtherSite,
                                                         where: str) -> None:
    """An EventSource from another origin (with credentials, so a cookie would go) is refused:
    it gets no event, and gives up."""
    victim_page.goto(attacker_origin(attacker, where) + "/")
    victim_page.evaluate(
        """(url) => {
             window.seen = [];
             const es = new EventSource(url, {withCredentials: true});
             for (const type of ['message', 'connected', 'log', 'state']) es.addEventListener(type, (e) => seen.push(e.data));
             window.es = es;
           }""", f"{victim.url}/api/agents/victim/stream")
    victim_page.wait_for_function("() => window.es.readyState === EventSource.CLOSED")
    assert victim_page.evaluate("() => window.seen") == []
    refused_in_log(victim, "GET", "/api/agents/victim/stream")


# ------------------------------------------------------------------ DNS rebinding


@pytest.fixture
def rebinding(attacker: OtherSite, victim: Server) -> Iterator[TcpProxy]:
    """``rebind.test:<port>``: first the attacker's server, then (``target`` changed) ours."""
    proxy = TcpProxy("127.0.0.1", attacker.port)
    yield proxy
    proxy.close()


def rebound_page(victim_page: Any, rebinding: TcpProxy, victim: Server) -> str:
    origin = f"http://rebind.test:{rebinding.port}"
    victim_page.goto(origin + "/")  # the attacker's page, from the attacker's server
    rebinding.target = ("127.0.0.1", victim.port)  # the name now "resolves" to the victim
    return origin


def test_rebinding_get_reads_nothing(victim_page: Any, victim: Server, rebinding: TcpProxy) -> None:
    """After the rebind the page's same-origin GETs reach our server and get 403 invalid_host:
    no agent list, no events, no stream."""
    rebound_page(victim_page, rebinding, victim)
    answers = victim_page.evaluate(
        """async () => {
             const out = [];
             for (const path of ['/api/agents', '/api/agents/victim/events', '/api/agents/victim/stream', '/']) {
               const r = await fetch(path, {cache: 'no-store'});
               out.push([r.status, await r.text()]);
             }
             return out;
           }""")
    for status, body in answers:
        assert status == 403 and "invalid_host" in body and SECRET not in body and "victim" not in body
    assert len(rebinding.heads) >= 2  # the attacker's page, then connections to us


def test_rebinding_post_runs_nothing(victim_page: Any, victim: Server, rebinding: TcpProxy, tmp_path: Path) -> None:
    """After the rebind a same-origin JSON POST (no preflight needed) gets 403 invalid_host and
    creates nothing."""
    marker = tmp_path / "rebind"
    rebound_page(victim_page, rebinding, victim)
    status = victim_page.evaluate(
        """async (body) => (await fetch('/api/agents', {method: 'POST', body,
                                                       headers: {'Content-Type': 'application/json'}})).status""",
        create_body("rebound", marker))
    assert status == 403
    assert_nothing_ran(victim, "rebound", marker)
