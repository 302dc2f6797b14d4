"""The SSE wire format, parsed by the ecosystem's own parser: Chromium's ``EventSource``.

The pages read streams with ``fetch`` and our own parser (static/sseparser.js), because an
EventSource cannot send the token as a header. So nothing in the pages proves any more that
the frames are what a standard client expects. These tests do: an EventSource (token in
``?token=``, as the docs tell such clients to do) reads an agent's stream and the all-agents
stream, through a proxy that cuts the connection mid-run; what the browser delivered, after its
own reconnection with ``Last-Event-ID``, must be the server's history exactly, once each, and
after ``complete`` the browser must stop reconnecting (the 204).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from support.processes import Server, python_agent
from support.waiting import wait_for

pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import Page
except ImportError:  # pragma: no cover - the fixtures say what to install (and fail under CI)
    import os

    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        raise
    pytest.skip("Python Playwright is missing: pip install -e '.[test]'", allow_module_level=True)

FAST_RETRY = {"AGENT_SUPERVISOR_RETRY_MS": "200"}

# Prints, waits for a line of input (the cut happens meanwhile), prints again and ends.
BEFORE_AND_AFTER = (
    "import sys\n"
    "for i in range(1, 51): print(f'before {i}')\n"
    "line = sys.stdin.readline().strip()\n"
    "for i in range(1, 51): print(f'after {i} ({line})')\n"
)

#: Opens an EventSource and records every event of the given types as [type, lastEventId,
#: data], and each readyState change, in window.got / window.states.
OPEN = """([url, types]) => {
  window.got = []; window.states = []; window.errors = 0;
  const es = new EventSource(url);
  window.es = es;
  for (const type of types) {
    es.addEventListener(type, (e) => window.got.push([e.type, e.lastEventId, e.data]));
  }
  es.onmessage = (e) => window.got.push(['message', e.lastEventId, e.data]);
  es.onerror = () => { window.errors += 1; window.states.push(es.readyState); };
}"""


def history(server: Server, path: str) -> list[list[str]]:
    """[type, id, event JSON] of every event the server kept: each frame's data is the event."""
    events = server.get(path)["events"]
    return [[e["type"], str(e["id"]), json.dumps(e)] for e in events]


def same_events(got: list[list[str]], kept: list[list[str]]) -> None:
    assert [g[:2] for g in got] == [k[:2] for k in kept], "the browser's events are not the server's history"
    for (_, _, data), (_, _, kept_data) in zip(got, kept):
        assert json.loads(data) == json.loads(kept_data)


def open_same_origin(page: Page, url: str) -> None:
    """A page of the server's own origin (the dashboard, not signed in: it opens no stream)."""
    page.goto(url + "/")


@pytest.mark.slow
def test_eventsource_reads_an_agent_stream_and_resumes_after_a_cut(
    page: Page, make_server: Callable[..., Server], proxy_to: Callable[..., Any]
) -> None:
    server = make_server(env=FAST_RETRY)
    proxy = proxy_to(server.url)
    server.create(name="cut", command=python_agent(BEFORE_AND_AFTER))
    open_same_origin(page, proxy.url)
    kinds = sorted({k[0] for k in history(server, "/api/agents/cut/events?limit=10000")} | {"complete", "log", "state"})
    page.evaluate(OPEN, [f"/api/agents/cut/stream?token={server.token}", kinds])
    page.wait_for_function("() => window.got.some((e) => e[2].includes('before 50'))")

    proxy.hold()
    assert proxy.drop() > 0
    page.wait_for_function("() => window.states.includes(EventSource.CONNECTING)")
    assert server.request("POST", "/api/agents/cut/input", {"data": "go\n"}).status == 204
    wait_for(lambda: server.get("/api/agents/cut")["state"] != "running", 30, 0.05, "the agent to end")
    proxy.release()

    page.wait_for_function("() => window.es.readyState === EventSource.CLOSED", timeout=30_000)
    got = page.evaluate("() => window.got")
    kept = history(server, "/api/agents/cut/events?limit=10000")
    same_events(got, kept)
    assert got[-1][0] == "complete"
    assert [int(g[1]) for g in got] == sorted({int(g[1]) for g in got}), "ids strictly increase"
    assert any("after 50 (go)" in g[2] for g in got)


@pytest.mark.slow
def test_eventsource_reads_the_all_agents_stream_across_a_cut(
    page: Page, make_server: Callable[..., Server], proxy_to: Callable[..., Any]
) -> None:
    server = make_server(env=FAST_RETRY)
    proxy = proxy_to(server.url)
    open_same_origin(page, proxy.url)
    page.evaluate(OPEN, [f"/api/stream?token={server.token}", ["agent", "complete", "log", "state", "reset"]])
    page.wait_for_function("() => window.es.readyState === EventSource.OPEN")
    server.create(name="one", command=python_agent(BEFORE_AND_AFTER))
    page.wait_for_function("() => window.got.some((e) => e[2].includes('before 50'))")

    proxy.hold()
    assert proxy.drop() > 0
    page.wait_for_function("() => window.states.includes(EventSource.CONNECTING)")
    assert server.request("POST", "/api/agents/one/input", {"data": "go\n"}).status == 204
    wait_for(lambda: server.get("/api/agents/one")["state"] != "running", 30, 0.05, "the agent to end")
    proxy.release()

    page.wait_for_function("() => window.got.some((e) => e[0] === 'complete')", timeout=30_000)
    got = [g for g in page.evaluate("() => window.got") if g[0] in ("log", "complete", "state")]
    kept = [k for k in history(server, "/api/agents/one/events?limit=10000") if k[0] in ("log", "complete", "state")]
    same_events(got, kept)
    ids = [int(g[1]) for g in page.evaluate("() => window.got")]
    assert ids == sorted(set(ids)), "ids strictly increase, none twice"
