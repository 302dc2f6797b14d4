"""The REST API against a real server: the contract of docs/API.md, bad input, auth, CORS."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from support.processes import Server, python_agent
from support.waiting import wait_for


def json_error(content_type: str, body: Any) -> dict[str, str]:
    """The ``{"error": {code, message}}`` body every failure has, checked and returned."""
    assert content_type.startswith("application/json"), body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def error_of(response: Any) -> dict[str, str]:
    return json_error(response.headers.get("content-type", ""), response.json())


def test_create_list_show_stop_delete(make_server: Callable[..., Server]) -> None:
    """An agent goes through the whole REST lifecycle with the documented fields."""
    server = make_server()
    created = server.create(name="sleepy", command=["sleep", "30"])
    for key in ("name", "command", "state", "pid", "started_at", "ended_at", "exit_code", "signal",
                "duration_s", "lines", "extractions", "clients", "last_event_id"):
        assert key in created, key
    assert created["state"] == "running" and created["pid"] > 0
    assert [a["name"] for a in server.get("/api/agents")["agents"]] == ["sleepy"]
    response = server.request("DELETE", "/api/agents/sleepy")
    assert response.status == 409 and error_of(response)["code"] == "agent_running"
    response = server.request("POST", "/api/agents/sleepy/stop")
    assert response.status == 202
    agent = server.wait_state("sleepy", "exited")
    assert agent["signal"] == "SIGTERM" and agent["ended_at"]
    assert server.request("DELETE", "/api/agents/sleepy").status == 204
    assert server.request("GET", "/api/agents/sleepy").status == 404


def test_input_resize_restart_and_events(server: Server) -> None:
    """Input reaches the agent, resize is accepted, restart starts run 2, events page through."""
    server.create(name="reader", command=["sh", "-c", "read x; echo got $x; stty size"])
    assert server.request("POST", "/api/agents/reader/resize", {"cols": 90, "rows": 20}).status == 204
    assert server.request("POST", "/api/agents/reader/input", {"data": "hello\n"}).status == 204
    server.wait_state("reader", "exited")
    events = server.get("/api/agents/reader/events")["events"]
    lines = [e["data"]["line"] for e in events if e["type"] == "log"]
    assert "got hello" in lines and "20 90" in lines
    page = server.get("/api/agents/reader/events?after=0&limit=2")
    assert len(page["events"]) == 2
    rest = server.get(f"/api/agents/reader/events?after={page['events'][-1]['id']}")
    assert [e["id"] for e in page["events"] + rest["events"]] == [e["id"] for e in events]
    assert server.request("POST", "/api/agents/reader/input", {"data": "x\n"}).status == 409
    assert server.request("POST", "/api/agents/reader/restart").status == 202
    wait_for(lambda: server.get("/api/agents/reader")["run"] == 2, 10)
    server.request("POST", "/api/agents/reader/stop")
    server.wait_state("reader", "exited")


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_request"),
    (json.dumps({"name": "a/b", "command": ["true"]}).encode(), 400, "invalid_name"),
    (json.dumps({"name": "x", "command": ["true"], "extractors": [{"name": "e", "pattern": "(unclosed"}]}).encode(), 400, "invalid_extractor"),
    (json.dumps({"name": "x", "profile": "nope"}).encode(), 400, "unknown_profile"),
    (json.dumps({"name": "x", "command": ["no-such-binary-xyz"]}).encode(), 400, "executable_not_found"),
    (json.dumps({"name": "x", "command": []}).encode(), 400, "invalid_command"),
    (json.dumps({"name": "x", "command": ["true"], "cwd": "/nope/nope"}).encode(), 400, "invalid_cwd"),
    (json.dumps({"name": "x", "command": ["true"], "cols": "wide"}).encode(), 400, "invalid_request"),
    (b"{" + b'"name": "' + b"x" * (2 << 20) + b'"}', 413, "body_too_large"),
])
def test_bad_agent_definitions(client: FlaskClient, body: bytes, status: int, code: str) -> None:
    """Every kind of bad definition gets its status and a JSON error naming the problem (in
    process: nothing here needs a socket)."""
    response = client.post("/api/agents", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    error = json_error(response.headers.get("Content-Type", ""), response.get_json())
    assert error["code"] == code
    assert client.get("/api/agents").get_json() == {"agents": []}, "nothing half-created"
    if code == "invalid_extractor":
        assert "position" in error["message"]


@pytest.mark.parametrize("profile", [None, "shell"])
def test_a_users_extractors_are_numbered_in_their_own_list(client: FlaskClient, profile: str | None) -> None:
    """An error in the user's first extractor is about "extractor #1", whatever the profile's
    (or the default) extractors it is merged with; a name used twice in it is said too."""
    base: dict[str, object] = {"name": "num", "command": ["true"]} if profile is None else {
        "name": "num", "profile": profile}
    for extractors, says in (([["not", "an", "object"]], "extractor #1: must be an object"),
                             ([{"name": "ok", "pattern": "x"}, {"name": ["a"], "pattern": "x"}], "extractor #2: name"),
                             ([{"name": "d", "pattern": "x"}, {"name": "d", "pattern": "y"}], "extractor 'd': the name is used twice")):
        response = client.post("/api/agents", json={**base, "extractors": extractors})
        assert response.status_code == 400
        error = response.get_json()["error"]
        assert error["code"] == "invalid_extractor" and error["message"].startswith(says), error


def test_conflicts_unknowns_and_methods(server: Server) -> None:
    """409 for a running name, 404 for unknown agents and routes, 405 for a wrong method."""
    server.create(name="busy", command=["sleep", "30"])
    response = server.request("POST", "/api/agents", {"name": "busy", "command": ["true"]})
    assert response.status == 409 and error_of(response)["code"] == "agent_running"
    for method, path in (("GET", "/api/agents/ghost"), ("POST", "/api/agents/ghost/stop"),
                         ("GET", "/api/agents/ghost/stream"), ("GET", "/api/nothing-here")):
        response = server.request(method, path)
        assert response.status == 404 and error_of(response)["code"] in ("agent_not_found", "not_found")
    response = server.request("PUT", "/api/agents")
    assert response.status == 405 and error_of(response)
    response = server.request("GET", "/api/agents/busy/stream", headers={"Last-Event-ID": "abc"})
    assert response.status == 400 and error_of(response)["code"] == "invalid_last_event_id"
    response = server.request("GET", "/api/agents/busy/events?after=-1")
    assert response.status == 400
    server.request("POST", "/api/agents/busy/stop")
    server.wait_state("busy", "exited")


def test_token_required_on_every_api_route(make_server: Callable[..., Server]) -> None:
    """With a token, /api routes (streams and stats too) need it; /healthz and pages do not."""
    server = make_server(token="s3cret-token-0123")
    for path in ("/api/agents", "/api/sse/stats", "/api/stream", "/api/agents/x/stream"):
        response = server.request("GET", path, headers={"Authorization": ""})
        assert response.status == 401, path
        assert error_of(response)["code"] == "unauthorized"
        assert response.headers.get("www-authenticate", "").startswith("Bearer")
        bad = server.request("GET", path, headers={"Authorization": "Bearer wrong"})
        assert bad.status == 401
    assert server.request("GET", "/api/agents").status == 200
    assert server.request("GET", "/api/agents?token=s3cret-token-0123", headers={"Authorization": ""}).status == 200
    assert server.request("GET", "/healthz", headers={"Authorization": ""}).status == 200
    stream = server.stream("/api/stream?token=s3cret-token-0123", headers={"Authorization": ""})
    with stream:
        assert stream.status == 200 and stream.take().event == "connected"
    log = server.log_path.read_text()
    assert "s3cret-token-0123" not in log and "token=***" in log


def test_cors_answers_only_configured_origins(make_server: Callable[..., Server], tmp_path: Any) -> None:
    """A configured origin gets CORS headers and a preflight without the token; any other
    origin is refused with 403 cross_origin, its preflight too."""
    config = tmp_path / "config.toml"
    config.write_text('cors_origins = ["http://allowed.example"]\n')
    server = make_server("--config", str(config))
    ok = server.request("GET", "/api/agents", headers={"Origin": "http://allowed.example"})
    assert ok.status == 200 and ok.headers["access-control-allow-origin"] == "http://allowed.example"
    other = server.request("GET", "/api/agents", headers={"Origin": "http://evil.example"})
    assert other.status == 403 and error_of(other)["code"] == "cross_origin"
    assert "access-control-allow-origin" not in other.headers
    preflight = server.request("OPTIONS", "/api/agents", headers={
        "Origin": "http://allowed.example", "Access-Control-Request-Method": "POST", "Authorization": None})
    assert preflight.status == 204 and "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" not in preflight.headers and preflight.body == b""
    assert preflight.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    evil = server.request("OPTIONS", "/api/agents", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST", "Authorization": None})
    assert evil.status == 403 and "access-control-allow-origin" not in evil.headers


def test_doubled_slashes_and_encoded_slashes_are_json_not_redirects(server: Server) -> None:
    """Werkzeug would answer these with an HTML 308 that no error handler sees (found by the
    fuzz test: ``POST /api/agents/0%2F/stop``); they are JSON 404s, and a trailing slash is
    the path without it."""
    for method, path in (("POST", "/api/agents/0%2F/stop"), ("GET", "/api//agents"),
                         ("GET", "/static//app.js"), ("POST", "/api/agents/x%2F%2Fy/stop")):
        response = server.request(method, path)
        assert response.status == 404 and error_of(response)["code"] in ("agent_not_found", "not_found"), path
    assert server.request("GET", "/api/agents/").status == 200
    assert server.request("GET", "//").status == 200


def test_options_is_an_empty_204_with_allow(server: Server) -> None:
    """OPTIONS (not a CORS preflight) on a page, an API route or a static file is 204 with the
    methods in Allow, no body, no Content-Type and the API's CSP (it was a text/html 200 with the
    pages' CSP); on an unknown route a JSON 404, and without the token a JSON 401."""
    for path, methods in (("/", {"GET", "HEAD", "OPTIONS"}), ("/api/agents", {"GET", "POST", "OPTIONS"}),
                          ("/static/app.js", {"GET", "OPTIONS"}), ("/api/agents/x/stop", {"POST", "OPTIONS"})):
        response = server.request("OPTIONS", path)
        assert response.status == 204, path
        assert methods <= {m.strip() for m in response.headers["allow"].split(",")}, (path, response.headers)
        assert "content-type" not in response.headers and response.body == b"", path
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'", path
    missing = server.request("OPTIONS", "/api/nothing-here")
    assert missing.status == 404 and error_of(missing)["code"] == "not_found"
    refused = server.request("OPTIONS", "/api/agents", headers={"Authorization": None})
    assert refused.status == 401 and error_of(refused)["code"] == "unauthorized"


def test_no_token_is_refused_on_a_public_address(tmp_path: Any) -> None:
    """``--no-token`` on a non-loopback address is refused with one clear line (it never binds)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "supervisor", "serve", "--host", "0.0.0.0", "--port", "0",
                             "--no-token", "--data-dir", str(tmp_path / "d")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "--no-token" in result.stderr and "Traceback" not in result.stderr


def test_wildcard_allowed_hosts_without_a_token_is_refused(make_server: Any, tmp_path: Any) -> None:
    """``allowed_hosts = ["*"]`` with ``no_token = true`` is refused with one line naming the key
    (the reviewer's cfg2.toml); with a token the server starts, and says '*' turns the Host
    check off."""
    import subprocess
    import sys

    config = tmp_path / "cfg2.toml"
    config.write_text('allowed_hosts = ["*"]\nno_token = true\n')
    result = subprocess.run([sys.executable, "-m", "supervisor", "serve", "--port", "0", "--config", str(config),
                             "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "allowed_hosts" in result.stderr and "DNS rebinding" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "d" / "server.json").exists()
    tokened = make_server(env={"AGENT_SUPERVISOR_ALLOWED_HOSTS": "*"})
    assert tokened.request("GET", "/api/agents", headers={"Host": "rebound.example"}).status == 200
    assert any("WARNING" in line and "allowed_hosts has '*'" in line for line in tokened.log_path.read_text().splitlines())


def test_port_in_use_is_a_clear_error(server: Server, tmp_path: Any) -> None:
    """A second server on a taken port exits with one clear line, no traceback."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "supervisor", "serve", "--port", str(server.port),
                             "--data-dir", str(tmp_path / "d2")], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "already in use" in result.stderr and "Traceback" not in result.stderr


def test_healthz_and_pages(server: Server) -> None:
    """The health probe answers JSON; the dashboard and test page are served."""
    health = server.get("/healthz")
    assert health["status"] == "ok"
    assert server.request("GET", "/").status == 200
    assert server.request("GET", "/test_sse.html").status == 200


def test_profile_agent_uses_profile_extractors(server: Server, tmp_path: Any) -> None:
    """An agent defined by profile gets the profile's command and extractors, plus its args."""
    agent = server.create(name="np", profile="shell", args=["-c", "echo see https://example.org/x"])
    assert agent["command"][-2:] == ["-c", "echo see https://example.org/x"]
    server.wait_state("np", "exited")
    found = [e["data"] for e in server.get("/api/agents/np/events")["events"] if e["type"] == "extraction"]
    assert {"name": "url", "value": "https://example.org/x"}.items() <= found[0].items()


def test_many_lines_agent_counts(server: Server) -> None:
    """lines and extractions in the agent summary count the run's lines and matches."""
    server.create(name="counter", command=python_agent("for i in range(50): print('ERROR: e', i)"))
    agent = server.wait_state("counter", "exited")
    assert agent["lines"] == 50 and agent["extractions"] >= 50
