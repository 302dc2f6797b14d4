"""Property-based fuzzing of the REST API, against one real server for the whole module.

hypothesis draws a route (every REST route, a removed one, the pages, the streams), an agent
name, a body (any JSON value, an agent definition with any types in its fields, strings with
lone surrogates among them, or raw bytes)
and headers (content type, token, Origin, Host, Last-Event-ID). The property: every answer is
2xx or 4xx, never 5xx; every answer but a page's, a stream's or a 204 is the API's JSON (an
error is ``{"error": {code, message}}``); and ``/healthz`` answers after each request.

Commands stay harmless: ``true``, ``echo`` or names that do not exist.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.net import http
from support.processes import Server

ROUTES = [
    ("GET", "/api/agents"), ("POST", "/api/agents"), ("GET", "/api/agents/{name}"),
    ("POST", "/api/agents/{name}/stop"), ("POST", "/api/agents/{name}/restart"),
    ("POST", "/api/agents/{name}/input"), ("POST", "/api/agents/{name}/resize"),
    ("DELETE", "/api/agents/{name}"), ("GET", "/api/agents/{name}/events"),
    ("GET", "/api/agents/{name}/stream"), ("GET", "/api/stream"), ("GET", "/api/sse/stats"),
    ("POST", "/api/session"), ("DELETE", "/api/session"), ("GET", "/healthz"), ("GET", "/"),
    ("GET", "/test_sse.html"), ("PUT", "/api/agents"), ("OPTIONS", "/api/agents"), ("GET", "/api/nope"),
]
PAGES = {"/", "/test_sse.html"}

def texts(max_size: int) -> st.SearchStrategy[str]:
    """Text; about one in eight holds a lone surrogate (category Cs): valid JSON once escaped
    (``\\ud800``), but no UTF-8 text, so no argv, environment, input or history can carry it."""
    plain = st.text(max_size=max_size)
    lone = st.tuples(plain, st.characters(categories=["Cs"]), plain).map(lambda parts: "".join(parts))
    return st.sampled_from([True] * 7 + [False]).flatmap(lambda ok: plain if ok else lone)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts(30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts(10), inner, max_size=5),
    max_leaves=20,
)
names = st.sampled_from(["fz", "fz-2", "ghost"]) | st.text(min_size=1, max_size=70)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` seven times in eight, any JSON value otherwise: deep enough to get past the
    first checks, wild enough to hit the later ones."""
    # sampled_from is how hypothesis weighs: one_of of equal branches is about even.
    return st.sampled_from([True] * 7 + [False]).flatmap(lambda ok: valid if ok else json_values)


extractor_specs = st.lists(st.fixed_dictionaries(
    {"name": mostly(st.sampled_from(["e1", "e2", "error"]))},
    optional={"pattern": mostly(st.sampled_from(["x", "(?P<value>\\d+)", "(", "a*"]) | texts(20)),
              "flags": mostly(st.sampled_from(["", "i", "ims", "IGNORECASE"]))}), max_size=4)
#: Definitions of agents: a valid name and command most of the time, every other field in
#: turn valid or any JSON value. Commands stay harmless.
agent_bodies = st.fixed_dictionaries(
    {"name": mostly(st.sampled_from(["fz", "fz-2"])),
     "command": mostly(st.sampled_from([["true"], ["echo", "hi"], ["no-such-program-xyz"], []]))},
    optional={
        "profile": mostly(st.sampled_from(["shell", "npm", "nope"])), "args": mostly(st.lists(texts(8))),
        "cwd": mostly(st.sampled_from(["/", "/nope"])),
        "env": mostly(st.dictionaries(texts(8), texts(8), max_size=3)),
        "extractors": mostly(extractor_specs), "cols": mostly(st.integers(-5, 2000)),
        "rows": mostly(st.integers(-5, 600)), "stop_grace_s": mostly(st.floats(-1, 5000)),
        "restart": mostly(st.sampled_from(["never", "on-failure", "always"]) | st.fixed_dictionaries(
            {}, optional={"mode": mostly(st.just("always")), "max_restarts": mostly(st.integers(-1, 2000)),
                          "backoff_s": mostly(st.floats(0, 5000)), "backoff_max_s": json_values})),
    })
#: What each route that reads a body expects, most of the time.
route_bodies = {
    "/api/agents": agent_bodies,
    "/stop": st.fixed_dictionaries({}, optional={"grace_s": mostly(st.floats(-1, 5000))}),
    "/input": st.fixed_dictionaries({"data": mostly(texts(20))}),
    "/resize": st.fixed_dictionaries({"cols": mostly(st.integers(0, 2000)), "rows": mostly(st.integers(0, 600))}),
}
raw_bytes = st.binary(max_size=300) | st.just(b"[" * 5000) | st.just(b'{"name": "' + b"x" * 3000 + b'"}')
queries = st.sampled_from(["", "?after=0", "?limit=5", "?after=\u00b2", "?limit=-1", "?after=99999999999999999999",
                           "?last_event_id=\uff11", "?strip_ansi=1", "?token=wrong"]) | st.text(max_size=20).map(
                               lambda t: "?" + quote(t))
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=40)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("fuzz")
    server = Server(base / "data", [], {"HOME": str(base), "AGENT_SUPERVISOR_REQUEST_TIMEOUT_S": "1",
                                        "AGENT_SUPERVISOR_STOP_GRACE_S": "0.5"})
    server.start()
    yield server
    server.stop()


@st.composite
def requests(draw: st.DrawFn, token: str) -> tuple[str, str, bytes | None, dict[str, Any]]:
    # Defining agents has the most fields: a third of the requests.
    method, template = draw(st.sampled_from(ROUTES + [("POST", "/api/agents")] * 10))
    path = template.format(name=quote(draw(names), safe="")) + draw(queries)
    expected = next((b for suffix, b in route_bodies.items() if template.endswith(suffix)), json_values)
    kind = draw(st.sampled_from(["none", "json", "raw"] + ["expected"] * 7))
    makers: dict[str, Callable[[], bytes | None]] = {
        "none": lambda: None, "json": lambda: json.dumps(draw(json_values)).encode(),
        "expected": lambda: json.dumps(draw(expected)).encode(), "raw": lambda: draw(raw_bytes)}
    body = makers[kind]()
    headers: dict[str, Any] = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if draw(st.sampled_from([True] * 4 + [False])):
        return method, path, body, headers  # four in five are well-formed: their bodies get far
    headers["Authorization"] = draw(st.sampled_from([f"Bearer {token}", None, "Bearer wrong", "Basic x"]))
    headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", None]))
    if draw(st.booleans()):
        headers["Origin"] = draw(st.sampled_from(["http://evil.example", "null"]) | header_text)
    if draw(st.booleans()):
        headers["Host"] = draw(st.sampled_from(["evil.example", "localhost", "[::1]"]) | header_text)
    if draw(st.booleans()):
        headers["Last-Event-ID"] = draw(st.sampled_from(["0", "5", "-1", "\u00b2"]) | header_text)
    if draw(st.booleans()):
        headers["X-" + draw(st.text(st.sampled_from("abcdef"), min_size=1, max_size=8))] = draw(header_text)
    return method, path, body, headers


def _latin1(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_route_answers_json_4xx_or_2xx_never_5xx(target: Server, data: st.DataObject) -> None:
    """Random JSON values, types, sizes and headers on every route: a 2xx or 4xx, JSON where the
    API answers, never a 5xx, and /healthz still answers after each."""
    assert target.token is not None
    method, path, body, headers = data.draw(requests(target.token))
    headers = {k: (_latin1(v) if isinstance(v, str) else v) for k, v in headers.items()}
    path = _latin1(path)
    stream = method == "GET" and path.split("?", 1)[0].endswith("stream")
    if stream:
        with target.stream(path, headers=headers, timeout=10) as sse:
            status, ctype, raw = sse.status, sse.headers.get("content-type", ""), b""
            if status != 200:  # an error: a JSON body of Content-Length bytes
                raw = bytes(sse.raw)
                while len(raw) < int(sse.headers.get("content-length", "0")):
                    chunk = sse.sock.recv(65536)
                    if not chunk:
                        break
                    raw += chunk
    else:
        response = http(target.url, method, path, headers=headers, raw_body=body, timeout=10)
        status, ctype, raw = response.status, response.headers.get("content-type", ""), response.body
    assert 200 <= status < 300 or 400 <= status < 500, (status, method, path, raw[:300])
    page = path.split("?", 1)[0] in PAGES and status == 200
    if raw and not page and not (stream and status == 200):
        assert ctype.startswith("application/json"), (status, ctype, raw[:200])
        answer = json.loads(raw)
        if status >= 400:
            assert set(answer) == {"error"} and {"code", "message"} <= set(answer["error"]), answer
    health = http(target.url, "GET", "/healthz", timeout=10)
    assert health.status == 200 and health.json()["status"] == "ok"
