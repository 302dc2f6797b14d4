"""Secure by default, against a real server: the generated token and its runtime file, no
cookie, the Host, Origin and media-type checks, the security headers, and bad input
that must get a JSON 4xx (never a 500, an empty page or a hang).

Raw sockets where the bytes matter (a request line pywsgi refuses, a body that stops short).
Each check that a request was refused also checks that it did nothing.
"""
from __future__ import annotations

import html.parser
import json
import select
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from support import ROOT
from support.net import Response, exchange, http, parse_response
from support.processes import Server, python_agent
from support.waiting import wait_for


def error_of(response: Response) -> dict[str, str]:
    assert response.headers.get("content-type", "").startswith("application/json"), response.body[:200]
    error: dict[str, str] = response.json()["error"]
    assert set(error) == {"code", "message"} and error["message"]
    return error


def raw(server: Server, data: bytes, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` as it is, read until the server closes; (answer, seconds it took)."""
    started = time.monotonic()
    answer = exchange("127.0.0.1", server.port, data, timeout)
    return answer, time.monotonic() - started


def stdout_lines(server: Server, count: int, timeout: float = 10.0) -> list[str]:
    """The next ``count`` lines the server printed after "serving on"."""
    assert server.process is not None and server.process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        ready, _, _ = select.select([server.process.stdout], [], [], 0.1)
        if ready:
            lines.append(server.process.stdout.readline().decode().rstrip("\n"))
    return lines


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with a generated token for the read-only probes of this module; a short
    request timeout so that stalled requests are given up quickly."""
    base = tmp_path_factory.mktemp("security")
    server = Server(base / "data", [], {"HOME": str(base), "AGENT_SUPERVISOR_REQUEST_TIMEOUT_S": "1"})
    server.start()
    yield server
    server.stop()


# ------------------------------------------------------------------ the token and server.json


def test_generated_token_runtime_file_and_printed_link(make_server: Callable[..., Server]) -> None:
    """With no token configured, serve generates one (32 random bytes), writes {url, pid, token}
    to server.json with mode 0600, prints the dashboard link with it once, and requires it."""
    server = make_server()
    path = server.data_dir / "server.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert set(info) == {"url", "pid", "token"}
    assert info["url"] == server.url and server.process is not None and info["pid"] == server.process.pid
    assert len(info["token"]) >= 43  # 32 bytes, URL-safe base64
    printed = stdout_lines(server, 2)
    assert printed[0] == f"agent-supervisor: open the dashboard at {server.url}/?token={info['token']}"
    assert "server.json" in printed[1]
    assert http(server.url, "GET", "/api/agents").status == 401
    assert server.request("GET", "/api/agents").status == 200
    assert info["token"] not in server.log_path.read_text()


def test_runtime_file_is_removed_on_shutdown_and_replaced_on_start(make_server: Callable[..., Server],
                                                                   tmp_path: Path) -> None:
    """A clean shutdown removes server.json; the next start writes a new token, and the old one
    no longer opens anything."""
    server = make_server(data_dir=tmp_path / "d")
    old = server.token
    assert server.stop() == 0
    assert not (tmp_path / "d" / "server.json").exists()
    (tmp_path / "d" / "server.json").write_text('{"url": "http://127.0.0.1:1", "pid": 1, "token": "stale"}')
    again = make_server(data_dir=tmp_path / "d")
    assert again.token != old and again.token != "stale"
    assert again.request("GET", "/api/agents", headers={"Authorization": f"Bearer {old}"}).status == 401
    assert json.loads((tmp_path / "d" / "server.json").read_text())["token"] == again.token


def test_token_flag_and_no_token(make_server: Callable[..., Server]) -> None:
    """``--token T`` is the token (and is in server.json); ``--no-token`` opens the API on
    loopback, says so in a warning line, and writes a null token."""
    given = make_server(token="given-token-1234")
    assert json.loads((given.data_dir / "server.json").read_text())["token"] == "given-token-1234"
    assert stdout_lines(given, 1) == [f"agent-supervisor: open the dashboard at {given.url}/ with the token you configured"]
    open_server = make_server("--no-token")
    assert open_server.token is None
    assert http(open_server.url, "GET", "/api/agents").status == 200
    assert json.loads((open_server.data_dir / "server.json").read_text())["token"] is None
    warning = wait_for(lambda: [line for line in open_server.log_path.read_text().splitlines()
                                if "WARNING" in line and "--no-token" in line], 5)
    assert "any user" in warning[0]


def test_token_file_keeps_the_token_out_of_the_process_list(make_server: Callable[..., Server],
                                                            tmp_path: Path) -> None:
    """``serve --token-file F`` requires the token on F's first line, which, unlike ``--token``,
    no other user can read in /proc/<pid>/cmdline; --help says so."""
    secret = "from-a-file-0123456789"
    file = tmp_path / "token"
    file.write_text(secret + "\n")
    file.chmod(0o600)
    server = make_server("--token-file", str(file))
    server.token = secret
    assert server.process is not None
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    assert b"--token-file" in cmdline and secret.encode() not in cmdline
    assert server.request("GET", "/api/agents").status == 200
    assert server.request("GET", "/api/agents", headers={"Authorization": "Bearer wrong"}).status == 401
    assert json.loads((server.data_dir / "server.json").read_text())["token"] == secret
    assert secret not in server.log_path.read_text()
    helped = subprocess.run([sys.executable, "-m", "supervisor", "serve", "--help"], capture_output=True,
                            text=True, timeout=30, cwd=ROOT)
    assert "/proc/PID/cmdline" in " ".join(helped.stdout.split()) and "--token-file" in helped.stdout


@pytest.mark.parametrize("args, says", [
    (["--token", "a"], "token: must be at least 16 characters long (it is 1"),
    (["--token", "t\u00f6ken-not-ascii-0123"], "token: must be printable ASCII"),
    (["--token-file", "/nonexistent/token"], "--token-file: cannot read '/nonexistent/token'"),
    (["--token-file", "{empty}"], "token: must be a non-empty string (the first line of"),
    (["--token", "a-long-enough-token-1", "--token-file", "x"], "give one of --token, --token-file and --no-token"),
])
def test_bad_tokens_stop_serve_in_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    """A token too short, not ASCII, an unreadable or empty token file, or two sources: serve
    exits at once with one line saying why (and never the token)."""
    empty = tmp_path / "empty"
    empty.write_text("\n")
    args = [arg.replace("{empty}", str(empty)) for arg in args]
    result = subprocess.run([sys.executable, "-m", "supervisor", "serve", "--port", "0", "--data-dir",
                             str(tmp_path / "d"), *args], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert says in result.stderr, result.stderr
    assert "serving on" not in result.stdout


def test_a_wildcard_bind_warns_and_prints_a_link_that_works(make_server: Callable[..., Server]) -> None:
    """``serve --host 0.0.0.0`` says its link is plain HTTP on the network and prints one with
    this machine's address (never 0.0.0.0) that the server answers; the runtime file and the
    command line use the loopback address."""
    server = make_server("--host", "0.0.0.0")
    assert server.url.startswith("http://127.0.0.1:")
    assert json.loads((server.data_dir / "server.json").read_text())["url"] == server.url
    printed = stdout_lines(server, 2)
    link = next(line for line in printed if "open the dashboard at" in line).split(" at ", 1)[1]
    assert link.endswith(f"/?token={server.token}") and "0.0.0.0" not in link
    host = link.split("//", 1)[1].split("/", 1)[0]
    if host != f"127.0.0.1:{server.port}":  # a machine with a network: its address
        assert printed[0] == f"agent-supervisor: other machines reach it at http://{host} (plain HTTP)"
    assert server.request("GET", "/api/agents", headers={"Host": host}).status == 200
    warning = wait_for(lambda: [line for line in server.log_path.read_text().splitlines()
                                if "WARNING" in line and "plain HTTP" in line], 5)
    assert f"http://{host}" in warning[0] and "unencrypted" in warning[0]


def test_no_cookie_opens_anything(shared: Server) -> None:
    """No answer sets a cookie and no cookie is a credential: a browser would send one to every
    other server on 127.0.0.1 too. The former session route is gone, and its cookie (an HMAC
    of the token) opens neither REST nor streams."""
    import hashlib
    import hmac

    assert shared.token is not None
    for method, path in (("POST", "/api/session"), ("GET", "/"), ("GET", "/api/agents"), ("GET", "/test_sse.html")):
        response = shared.request(method, path)
        assert "set-cookie" not in response.headers, (method, path)
    assert shared.request("POST", "/api/session").status == 404
    old = hmac.new(shared.token.encode(), b"agent-supervisor browser session v1", hashlib.sha256).hexdigest()
    for value in (old, shared.token):
        jar = {"Authorization": None, "Cookie": f"agent-supervisor-{shared.port}={value}"}
        assert shared.request("GET", "/api/agents", headers=jar).status == 401
        with shared.stream("/api/stream", headers=jar) as stream:
            assert stream.status == 401


def test_token_never_reaches_the_log(shared: Server) -> None:
    """Header and query uses of the token leave no trace of it in the server's log, however the
    request line spells it: an encoded key (which authenticates), ``;token=``, ``TOKEN=``,
    ``token%3D``, an encoded value, the token in the path."""
    token = shared.token
    assert token is not None
    spelled = "".join(f"%{b:02X}" for b in token.encode())
    no_header = {"Authorization": None}
    assert shared.request("GET", f"/api/agents?token={token}", headers=no_header).status == 200
    assert shared.request("GET", f"/api/agents?%74oken={token}", headers=no_header).status == 200
    assert shared.request("GET", f"/api/agents?token={spelled}", headers=no_header).status == 200
    for target in (f"/?token={token}", f"/api/agents;token={token}", f"/api/agents?TOKEN={token}",
                   f"/api/agents?token%3D{token}", f"/api/agents/{token}/stream", f"/api/agents?x={spelled.lower()}"):
        shared.request("GET", target, headers=no_header)
    wait_for(lambda: '"GET /api/agents?x=***' in shared.log_path.read_text(), 5, what="the last request's log line")
    log = shared.log_path.read_text()
    assert token not in log and spelled not in log and spelled.lower() not in log
    assert "token=***" in log


# ------------------------------------------------------------------ Host, Origin, media type


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8151", "127.0.0.1.evil.example", "localhost.",
                                  "[::2]", "127.0.0.1:80:80"])
def test_foreign_host_names_get_invalid_host_on_every_route(shared: Server, host: str) -> None:
    """A Host that is not a loopback name or the bound address is 403 invalid_host everywhere:
    the signature of a DNS-rebinding page."""
    for path in ("/api/agents", "/", "/healthz", "/api/stream", "/static/app.js"):
        response = shared.request("GET", path, headers={"Host": host})
        assert response.status == 403, (host, path)
        assert error_of(response)["code"] == "invalid_host"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST:{port}", "127.0.0.1:{port}",
                                  "[::1]:{port}"])
def test_loopback_names_are_answered_with_or_without_the_port(shared: Server, host: str) -> None:
    """127.0.0.1, localhost and [::1] (with any port, any case) are this server's names."""
    response = shared.request("GET", "/api/agents", headers={"Host": host.format(port=shared.port)})
    assert response.status == 200


def test_allowed_hosts_adds_names(make_server: Callable[..., Server]) -> None:
    """allowed_hosts lets a reverse proxy's names through: exact names and .suffix ones."""
    server = make_server(env={"AGENT_SUPERVISOR_ALLOWED_HOSTS": "agents.example,.corp.example"})
    for host, status in (("agents.example", 200), ("ci.corp.example:443", 200), ("corp.example", 200),
                         ("evilcorp.example", 403), ("other.example", 403)):
        assert server.request("GET", "/api/agents", headers={"Host": host}).status == status, host


def test_foreign_origins_are_refused_streams_included(shared: Server) -> None:
    """An Origin other than the server's own gets 403 cross_origin on REST and on streams, as
    does a request the browser marks cross-site or same-site without one."""
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": f"http://127.0.0.1:{shared.port + 1}"}, {"Origin": f"http://localhost:{shared.port}"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        for method, path in (("GET", "/api/agents"), ("POST", "/api/agents"), ("GET", "/api/stream"),
                             ("GET", "/api/agents/x/events")):
            response = shared.request(method, path, {"name": "o", "command": ["true"]} if method == "POST" else None,
                                      headers=headers)
            assert response.status == 403, (headers, path)
            assert error_of(response)["code"] == "cross_origin"
    assert "o" not in [a["name"] for a in shared.get("/api/agents")["agents"]]
    own = {"Origin": shared.url, "Sec-Fetch-Site": "same-origin"}
    assert shared.request("GET", "/api/agents", headers=own).status == 200
    assert shared.request("GET", "/api/agents", headers={"Sec-Fetch-Site": "none"}).status == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx", "none"])
def test_bodies_that_are_not_json_get_415_and_start_nothing(shared: Server, tmp_path: Path,
                                                            content_type: str) -> None:
    """A text/plain, form or untyped body gets 415 unsupported_media_type and runs nothing."""
    marker = tmp_path / "ran"
    body = json.dumps({"name": "m", "command": ["touch", str(marker)]}).encode()
    headers = {"Content-Type": content_type} if content_type != "none" else {"Content-Type": None}
    response = shared.request("POST", "/api/agents", raw_body=body, headers=headers)
    assert response.status == 415 and error_of(response)["code"] == "unsupported_media_type"
    assert "m" not in [a["name"] for a in shared.get("/api/agents")["agents"]]
    assert not marker.exists()


def test_json_with_a_charset_is_json(shared: Server) -> None:
    """``application/json; charset=utf-8`` is accepted as JSON."""
    response = shared.request("POST", "/api/agents", raw_body=b'{"name": "c"}',
                              headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status == 400 and error_of(response)["code"] == "invalid_request"  # no command: but parsed


# ------------------------------------------------------------------ headers


class _Markup(html.parser.HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append("inline <script>")
        if tag == "style":
            self.inline.append("<style>")
        self.inline += [f"{tag} {name}=" for name in names if name.startswith("on") or name == "style"]


@pytest.mark.parametrize("page", ["static/index.html", "test_sse.html"])
def test_pages_have_no_inline_script_or_style(page: str) -> None:
    """The pages keep to their CSP: no inline script, handler attribute or inline style."""
    markup = _Markup()
    markup.feed((ROOT / page).read_text())
    assert markup.inline == []


def test_security_headers_everywhere(shared: Server) -> None:
    """nosniff and no-referrer on every answer; pages get a CSP without inline script and with
    frame-ancestors 'none'; API answers a CSP that allows nothing."""
    for path in ("/", "/test_sse.html", "/static/app.js", "/api/agents", "/api/nothing", "/healthz"):
        response = shared.request("GET", path)
        assert response.headers.get("x-content-type-options") == "nosniff", path
        assert response.headers.get("referrer-policy") == "no-referrer", path
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
        if path in ("/", "/test_sse.html"):
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        else:
            assert csp.startswith("default-src 'none'")
    for page in ("/", "/test_sse.html"):  # a 304 too: a browser keeps its headers for the page
        first = shared.request("GET", page)
        again = shared.request("GET", page, headers={"If-None-Match": first.headers["etag"]})
        assert again.status == 304 and again.headers["content-security-policy"] == first.headers["content-security-policy"]
    with shared.stream("/api/stream") as stream:
        assert stream.headers.get("x-content-type-options") == "nosniff"
        assert stream.headers.get("referrer-policy") == "no-referrer"
    refused = parse_response(raw(shared, b"\x00garbage\r\n\r\n")[0])
    assert refused.headers.get("x-content-type-options") == "nosniff"


# ------------------------------------------------------------------ bad input: never a 500


def healthy(server: Server) -> None:
    assert server.get("/healthz")["status"] == "ok"


@pytest.mark.parametrize("body, code", [
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "invalid_json"),
    (json.dumps({"name": "x", "command": ["true"], "extractors": [{"name": ["a"], "pattern": "x"}]}).encode(),
     "invalid_extractor"),
    (json.dumps({"name": "x", "command": ["true"], "extractors": [{"name": {"a": 1}, "pattern": "x"}]}).encode(),
     "invalid_extractor"),
    (json.dumps({"name": "x", "command": ["true"], "extractors": [{"name": None, "pattern": "x"}]}).encode(),
     "invalid_extractor"),
    (b'{"name": "x", "command": ["true"], "cols": 1' + b"0" * 5000 + b"}", "invalid_json"),
])
def test_hostile_json_bodies_get_a_json_400(shared: Server, body: bytes, code: str) -> None:
    """JSON nested 100,000 deep, an extractor name that is a list or an object, a 5,000-digit
    number: each is a JSON 400 naming the problem, and the server goes on."""
    response = shared.request("POST", "/api/agents", raw_body=body)
    assert response.status == 400, response.body[:300]
    assert error_of(response)["code"] == code
    healthy(shared)


LONE = "\\ud800"  # as the JSON text has it: an escape of a lone surrogate


@pytest.mark.parametrize("body", [
    '{"name": "sur-cmd", "command": ["echo", "%s"]}',
    '{"name": "sur-env", "command": ["true"], "env": {"K": "%s"}}',
    '{"name": "sur-key", "command": ["true"], "env": {"K%s": "v"}}',
    '{"name": "sur-ext", "command": ["true"], "extractors": [{"name": "x", "pattern": "a%s"}]}',
    '{"name": "sur-%s", "command": ["true"]}',
    '"%s"',
    "[" * 900 + '"%s"' + "]" * 900,  # as deep as the parser goes: walked without recursion
])
def test_lone_surrogates_are_invalid_json_and_create_nothing(shared: Server, body: str) -> None:
    """Valid JSON whose string holds a lone surrogate escape (not a character: no UTF-8 text
    carries it) in an argument, an env value or key, a pattern or a name is 400 invalid_json
    naming where, and nothing is created (it used to be a 500, or a ghost agent)."""
    response = shared.request("POST", "/api/agents", raw_body=(body % LONE).encode())
    assert response.status == 400, response.body[:300]
    error = error_of(response)
    assert error["code"] == "invalid_json" and "lone surrogate" in error["message"]
    assert not [a for a in shared.get("/api/agents")["agents"] if a["name"].startswith("sur-")]
    healthy(shared)


def test_lone_surrogates_in_input_and_a_rerun_leave_the_agent_as_it_was(shared: Server) -> None:
    """Typed input with a lone surrogate is 400 and the agent keeps running; re-using the name
    of an agent that ended with such an argument is 400 and leaves it as it was (deletable);
    a proper surrogate pair (an emoji, escaped) is fine."""
    shared.create(name="typed", command=python_agent("import sys\nprint('ready')\nprint('got', sys.stdin.readline())"))
    shared.wait_state("typed", "running")
    response = shared.request("POST", "/api/agents/typed/input", raw_body=f'{{"data": "x{LONE}"}}'.encode())
    assert response.status == 400 and error_of(response)["code"] == "invalid_json"
    assert shared.request("POST", "/api/agents/typed/input", raw_body=b'{"data": "\\ud83d\\ude00\\n"}').status == 204
    ended = shared.wait_state("typed", "exited")
    again = shared.request("POST", "/api/agents", raw_body=f'{{"name": "typed", "command": ["echo", "{LONE}"]}}'.encode())
    assert again.status == 400
    assert shared.get("/api/agents/typed")["state"] == "exited" and shared.get("/api/agents/typed")["run"] == ended["run"]
    assert shared.request("DELETE", "/api/agents/typed").status == 204


@pytest.mark.parametrize("query", ["after=\u00b2", "limit=\u00b2", "after=\uff11\uff12", "limit=%C2%B2",
                                   "after=%EF%BC%91", "after=1e3", "limit=0x10", "after=+1"])
def test_non_ascii_digits_in_the_query_are_400(shared: Server, query: str) -> None:
    """events?after= and limit= take ASCII digits only: '²' or full-width digits are 400."""
    shared.request("POST", "/api/agents", {"name": "q", "command": ["true"]})
    path = f"/api/agents/q/events?{query}".encode().decode("latin-1")
    response = shared.request("GET", path)
    assert response.status == 400 and error_of(response)["code"] == "invalid_request"


@pytest.mark.parametrize("header, query", [("\uff11\uff12", None), ("\u00b2", None), (None, "%EF%BC%91%EF%BC%92"),
                                           (None, "%C2%B2"), (None, "%D9%A1")])
def test_non_ascii_last_event_ids_are_400(shared: Server, header: str | None, query: str | None) -> None:
    """Last-Event-ID and ?last_event_id= take ASCII digits only ('１２' is not 12); the error
    shows the value as sent, readable and in escapes (not its UTF-8 bytes read as latin-1)."""
    path = "/api/stream" + (f"?last_event_id={query}" if query else "")
    headers = {"Last-Event-ID": header.encode("utf-8").decode("latin-1")} if header else {}
    response = shared.request("GET", path, headers=headers)
    assert response.status == 400 and error_of(response)["code"] == "invalid_last_event_id"
    sent = header if header is not None else unquote(query or "")
    message = error_of(response)["message"]
    assert message.endswith(f"not {sent!r} ({ascii(sent)[1:-1]})"), message


def test_a_last_event_id_that_is_not_utf8_is_shown_escaped(shared: Server) -> None:
    """Header bytes that are not UTF-8 are shown as escapes, not as mojibake."""
    response = shared.request("GET", "/api/stream", headers={"Last-Event-ID": "1\xff2"})
    assert response.status == 400 and error_of(response)["message"].endswith("not '1\u00ff2' (1\\xff2)")


def _request(shared: Server, head: str, body: bytes = b"") -> bytes:
    return (head.replace("\n", "\r\n") + "\r\n").encode() + body


def test_chunked_body_is_read_with_the_same_limit(shared: Server) -> None:
    """A chunked body is read like any other (a bad definition gets its 400 naming the field);
    one past max_body_bytes is 413."""
    body = b'{"name": "ch", "nope": 1}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:])) + b"0\r\n\r\n"
    head = (f"POST /api/agents HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {shared.token}\n"
            "Content-Type: application/json\nTransfer-Encoding: chunked\nConnection: close\n")
    response = parse_response(raw(shared, _request(shared, head, chunks))[0])
    assert response.status == 400 and "nope" in error_of(response)["message"]
    big = b"".join(b"10000\r\n" + b" " * 0x10000 + b"\r\n" for _ in range(20)) + b"0\r\n\r\n"
    response = parse_response(raw(shared, _request(shared, head, big))[0])
    assert response.status == 413 and error_of(response)["code"] == "body_too_large"
    healthy(shared)


@pytest.mark.slow
def test_body_shorter_than_its_length_times_out_and_closes(shared: Server) -> None:
    """A body that stops before its Content-Length gets 408 after request_timeout_s (1 s here)
    and the connection is closed: no minute-long hang."""
    head = (f"POST /api/agents HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {shared.token}\n"
            "Content-Type: application/json\nContent-Length: 100\n")
    answer, took = raw(shared, _request(shared, head, b'{"name": '))
    response = parse_response(answer)
    assert response.status == 408 and error_of(response)["code"] == "request_timeout"
    assert took < 5
    healthy(shared)


@pytest.mark.slow
def test_a_head_that_stops_arriving_times_out(shared: Server) -> None:
    """A request head that stalls half-way gets 408 and the connection closes."""
    answer, took = raw(shared, b"GET /api/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert parse_response(answer).status == 408 and took < 5


@pytest.mark.parametrize("data, status, code", [
    (b"\x00\x01garbage\r\n\r\n", 400, "bad_request"),
    (b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", 400, "bad_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
     431, "headers_too_large"),
    (b"GET /healthz?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414, "uri_too_long"),
    (b"POST /api/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
])
def test_requests_pywsgi_refuses_get_a_json_error(shared: Server, data: bytes, status: int, code: str) -> None:
    """A garbage request line, a 200 KB header, 200 headers, a 100 KB URL or a bad length gets
    the API's JSON error (not pywsgi's empty page), read in full (no reset), and the server goes on."""
    response = parse_response(raw(shared, data)[0])
    assert response.status == status
    assert error_of(response)["code"] == code
    healthy(shared)


@pytest.mark.parametrize("head, status, code", [
    ("GET /api/agents HTTP/1.1\nHost: 127.0.0.1\nHost: evil.example\n", 400, "bad_request"),
    ("GET /api/agents HTTP/1.1\nHost: evil.example\nHost: 127.0.0.1\n", 400, "bad_request"),
    ("GET /api/agents HTTP/1.1\n", 400, "bad_request"),
    ("POST /api/agents HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 13\nContent-Length: 60\n", 400, "bad_request"),
    ("POST /api/agents HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: gzip\n", 400, "bad_request"),
    ("POST /api/agents HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked, gzip\n", 400, "bad_request"),
    ("POST /api/agents HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n",
     400, "bad_request"),
    ("POST /api/agents HTTP/1.0\nHost: 127.0.0.1\nTransfer-Encoding: chunked\n", 400, "bad_request"),
    ("POST /api/agents HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: gzip, chunked\n", 501,
     "unsupported_transfer_coding"),
])
def test_requests_with_invalid_framing_get_a_json_error(shared: Server, tmp_path: Path, head: str, status: int,
                                                        code: str) -> None:
    """RFC 9112's invalid framings, which the server used to guess at (the first Host, the first
    Content-Length, a gzip body read as plain): two Host lines, HTTP/1.1 without Host,
    Content-Lengths that disagree, a Transfer-Encoding that does not end in chunked or comes
    in HTTP/1.0 are 400; a transfer coding besides chunked is 501. JSON, and nothing runs."""
    marker = tmp_path / "framed"
    body = json.dumps({"name": "framed", "command": ["touch", str(marker)]}).encode()
    head += f"Authorization: Bearer {shared.token}\nContent-Type: application/json\nConnection: close\n"
    if "Content-Length" not in head and head.startswith("POST"):
        head += f"Content-Length: {len(body)}\n" if "Transfer-Encoding" not in head else ""
    response = parse_response(raw(shared, _request(shared, head, body if head.startswith("POST") else b""))[0])
    assert response.status == status, response.body[:300]
    assert error_of(response)["code"] == code
    assert "framed" not in [a["name"] for a in shared.get("/api/agents")["agents"]] and not marker.exists()
    healthy(shared)


def test_identical_duplicate_content_lengths_are_one(shared: Server) -> None:
    """Two Content-Length lines with the same value are one length (RFC 9110 allows it)."""
    body = b'{"name": "dup-len"}'
    head = (f"POST /api/agents HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {shared.token}\n"
            f"Content-Type: application/json\nContent-Length: {len(body)}\nContent-Length: {len(body)}\n"
            "Connection: close\n")
    response = parse_response(raw(shared, _request(shared, head, body))[0])
    assert response.status == 400 and error_of(response)["code"] == "invalid_request"  # parsed: no command


def test_an_unread_body_is_not_read_through(shared: Server) -> None:
    """A route that takes no body, sent a huge declared one, answers and closes instead of
    reading the rest to find the next request."""
    head = (f"POST /api/agents/none/restart HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {shared.token}\n"
            "Content-Type: application/json\nTransfer-Encoding: chunked\n")
    answer, took = raw(shared, _request(shared, head, b"10\r\n" + b" " * 16 + b"\r\n"))
    response = parse_response(answer)
    assert response.status == 404 and response.headers.get("connection") == "close"
    assert took < 5


# ------------------------------------------------------------------ amplification


def test_extraction_amplification_is_capped(shared: Server) -> None:
    """89 extractors that match everywhere on 100 lines: the run ends promptly with 32
    extractions per line, the cut counted per agent and in the stats; a stream gets it all."""
    extractors = [{"name": f"q{i}", "pattern": "(?P<value>q?)."} for i in range(89)]
    started = time.monotonic()
    shared.create(name="amp", command=python_agent("for i in range(100): print('x' * 40)"), extractors=extractors)
    agent = shared.wait_state("amp", "exited", timeout=15)
    with shared.stream("/api/agents/amp/stream") as stream:
        events = stream.until(lambda e: e.event == "complete", timeout=15)
    assert time.monotonic() - started < 15
    assert agent["lines"] == 100
    assert agent["extractions"] == 100 * 32
    assert agent["extractions_cut"] == 100 * 89
    assert sum(1 for e in events if e.event == "extraction") == 100 * 32
    assert shared.get("/api/sse/stats")["extractions_cut"] >= 100 * 89


def test_the_stats_count_of_cuts_never_goes_down(make_server: Callable[..., Server]) -> None:
    """The stats' extractions_cut counts every run and every agent since the server started:
    a restart resets the agent's own count (its current run) but not the total, and deleting
    the agent takes nothing back."""
    server = make_server()
    extractors = [{"name": f"q{i}", "pattern": "(?P<value>q?)."} for i in range(40)]
    server.create(name="cuts", command=python_agent("for i in range(10): print('x' * 20)"), extractors=extractors)
    first = server.wait_state("cuts", "exited")
    per_run = 10 * 40  # per line: 4 extractors give 8 each (and are cut at 8), the line's cap cuts the other 36
    assert first["extractions_cut"] == per_run and server.get("/api/sse/stats")["extractions_cut"] == per_run
    assert server.request("POST", "/api/agents/cuts/restart").status == 202
    wait_for(lambda: server.get("/api/agents/cuts")["run"] == 2 and server.get("/api/agents/cuts")["state"] == "exited",
             15, what="the second run's end")
    assert server.get("/api/agents/cuts")["extractions_cut"] == per_run  # its own run's
    assert server.get("/api/sse/stats")["extractions_cut"] == 2 * per_run
    assert server.request("DELETE", "/api/agents/cuts").status == 204
    assert server.get("/api/sse/stats")["extractions_cut"] == 2 * per_run


def test_a_user_does_not_start_a_process_without_the_token(shared: Server, tmp_path: Path) -> None:
    """The three requests of the issue, against the default server, start nothing."""
    marker = tmp_path / "ran"
    body = json.dumps({"name": "evil", "command": ["touch", str(marker)]}).encode()
    for headers in ({"Authorization": None, "Content-Type": "text/plain"},
                    {"Authorization": None, "Host": "evil.example"},
                    {"Authorization": None}):
        response = shared.request("POST", "/api/agents", raw_body=body, headers=headers)
        assert response.status in (401, 403, 415)
    assert not marker.exists()
    assert "evil" not in [a["name"] for a in shared.get("/api/agents")["agents"]]

