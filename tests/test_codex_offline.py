"""The real codex CLI completes whole turns offline, against the stand-in model API.

The stand-in (:mod:`support.fake_responses`) answers the first model request with a shell
command and the second, which carries the command's output, with a final message. codex runs
under the real supervisor on a real PTY, in ``codex exec --json`` and in its full screen, and the
full screen is compared with tmux running the same thing at the same size.

Offline: codex gets a temporary home whose config points it at the stand-in and turns off every
start-up fetch a setting can turn off (:mod:`support.offline_codex`); all proxy variables point
at the stand-in, which refuses and records anything sent that way; and codex runs in a network
namespace with only loopback where one can be made (root; required under ``CI=true``).

The codex tests skip when codex is not installed, and fail under ``CI=true`` (see
:func:`support.codex.codex_bin`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.containment import server_id_for

from support import ROOT, loopback_netns, tmux
from support.cli import cli
from support.codex import CODEX_VERSION, in_ci, unavailable
from support.containment import MODES, marked_processes, need
from support.fake_responses import FakeResponses, Reply, Usage, call_function, response_events, run_command, say
from support.loopback_netns import LoopbackNetns
from support.net import http
from support.offline_codex import OfflineCodex
from support.processes import Server, alive, descendants
from support.sse import SSEEvent, collect, plain
from support.waiting import wait_for

FIXTURES = ROOT / "tests" / "fixtures" / "codex"  # real captures of `codex exec --json`, for the extractors
COMMAND = "echo offline-$((6 * 7))"  # the shell, not the script, makes the 42
FINAL = "Ran it: the command printed offline-42."
FIRST, SECOND = Usage(1500, 300, 40, 12), Usage(1700, 1400, 25, 0)


def script() -> list[Reply]:
    return [run_command(COMMAND, FIRST), say(FINAL, SECOND)]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def netns() -> Iterator[LoopbackNetns | None]:
    """A loopback-only network namespace for codex, or None where one cannot be made."""
    reason = loopback_netns.unavailable_reason()
    if reason is not None:
        if in_ci():
            pytest.fail(f"{reason} (CI=true: codex must run where it cannot reach the network)")
        warnings.warn(f"codex runs without a network namespace: {reason}; only the proxy trap "
                      "catches what it tries to reach", stacklevel=1)
        yield None
        return
    with LoopbackNetns() as ns:
        yield ns


@pytest.fixture
def offline(codex_bin: Path, netns: LoopbackNetns | None,
            tmp_path: Path) -> Iterator[Callable[..., OfflineCodex]]:
    """Make an :class:`OfflineCodex` with a stand-in of its own; all are stopped afterwards,
    their daemons too (the supervisor's stop ends them, but a test that fails before its stop
    would leave them: they left codex's session)."""
    made: list[OfflineCodex] = []
    # A short root, not tmp_path: codex's footer row shows the model, the working directory and
    # the title, and a long directory (pytest-xdist's basetemp adds popen-gwN/) pushes the title
    # off a 120-column row.
    root = Path(tempfile.mkdtemp(prefix="codex-"))

    def make(replies: list[Reply], daemon: bool = False, trusted: bool = True, signed_in: bool = True) -> OfflineCodex:
        listener = netns.listen() if netns else None
        fake = FakeResponses(replies, listener=listener).start()
        codex = OfflineCodex(codex_bin, fake, root / f"codex{len(made)}", netns, daemon=daemon,
                             trusted=trusted, signed_in=signed_in)
        subprocess.run(["git", "init", "-q", str(codex.workdir)], check=True, timeout=30)  # so trust matters
        made.append(codex)
        return codex

    try:
        yield make
    finally:
        for codex in made:
            codex.fake.close()
            codex.stop_daemons()
        shutil.rmtree(root, ignore_errors=True)


def assert_offline(codex: OfflineCodex, mode: str) -> None:
    assert codex.fake.problems == [], codex.fake.summary()
    assert codex.strays_beyond(mode) == [], f"codex tried to reach other hosts: {codex.fake.strays}"


def assert_turn_went_through(codex: OfflineCodex, prompt: str) -> None:
    """Two model requests: the prompt, then the same conversation with the command's output."""
    first, second = codex.fake.turns
    assert prompt in first.user_texts()
    assert "exec" in first.offered_tools()
    output = second.call_output(codex.fake.replies[0].calls[0].call_id)
    assert output is not None and "offline-42" in output, second.input()[-2:]
    assert codex.fake.replies_left == 0


def json_lines(events: list[SSEEvent]) -> list[dict[str, Any]]:
    found = []
    for event in events:
        if event.event == "log" and not event.json()["data"].get("partial"):
            line = plain(event).strip()
            if line.startswith("{"):
                found.append(json.loads(line))
    return found


def shape(value: Any) -> Any:
    """A JSON value with the values replaced by their types: what stays from run to run."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def shapes(fixture: str) -> list[Any]:
    return [shape(json.loads(line)) for line in (FIXTURES / fixture).read_text().splitlines()]


# --------------------------------------------------------------------------- the stand-in alone


def post(fake: FakeResponses, body: Any, key: str | None = None) -> tuple[int, bytes]:
    """A model request as codex makes it (codex's own client is what the other tests use)."""
    response = http(fake.proxy_url, "POST", "/v1/responses", body,
                    {"Authorization": f"Bearer {key or fake.api_key}", "Accept": "text/event-stream"})
    return response.status, response.body


def sse_data(body: bytes) -> list[dict[str, Any]]:
    """The events of an SSE body, each checked to be named after its type."""
    events = []
    for frame in body.decode().split("\n\n"):
        if frame:
            name, data = frame.split("\n")
            event = json.loads(data.removeprefix("data: "))
            assert name == f"event: {event['type']}"
            events.append(event)
    return events


def offering(*tools: str, prompt: str = "hi", extra: list[Any] | None = None) -> dict[str, Any]:
    functions = [{"type": "custom", "name": name} for name in tools]
    return {"model": "m", "stream": True,
            "input": [{"type": "additional_tools", "tools": [{"type": "namespace", "name": "functions",
                                                               "tools": functions}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]},
                      *(extra or [])]}


def test_stand_in_streams_a_tool_call_then_a_message_and_checks_the_round_trip() -> None:
    """The stream has the Responses API's events in order, numbered; the second request must
    carry the first call's output; what the script lacks or codex would not offer is reported."""
    with FakeResponses(script()) as fake:
        status, body = post(fake, offering("exec"))
        assert status == 200
        events = sse_data(body)
        assert [e["type"] for e in events] == [
            "response.created", "response.in_progress", "response.output_item.added",
            *["response.custom_tool_call_input.delta"] * (len(events) - 6),
            "response.custom_tool_call_input.done", "response.output_item.done", "response.completed"]
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        call = events[-2]["item"]
        assert call["type"] == "custom_tool_call" and call["name"] == "exec"
        assert "".join(e["delta"] for e in events if e["type"].endswith(".delta")) == call["input"]
        assert "tools.exec_command" in call["input"] and json.dumps(COMMAND) in call["input"]
        assert events[-1]["response"]["usage"] == {
            "input_tokens": 1500, "input_tokens_details": {"cached_tokens": 300}, "output_tokens": 40,
            "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 1540}

        # The next request forgets the call's output: answered, but reported.
        status, body = post(fake, offering("exec"))
        message = sse_data(body)[-2]["item"]
        assert status == 200 and message["content"][0]["text"] == FINAL
        assert fake.problems == [f"codex did not send back the output of exec call {call['call_id']}"]

        # Past the end of the script, and without the key: JSON errors, reported.
        status, body = post(fake, offering("exec"))
        assert status == 400 and "the script has 2" in json.loads(body)["error"]["message"]
        status, body = post(fake, offering("exec"), key="nope")
        assert status == 400 and "without the API key" in fake.problems[-1]
        assert [r.kind for r in fake.requests] == ["turn", "turn", "turn", "other"]


def test_stand_in_refuses_what_goes_through_it_as_a_proxy_and_tools_it_was_not_offered() -> None:
    """A CONNECT is refused with 403 and recorded as a stray; a scripted call of a tool the
    request does not offer is reported; the title request of the full screen is answered aside."""
    with FakeResponses([call_function("exec_command", {"cmd": "ls"})], title="Say hi") as fake:
        with socket.create_connection(("127.0.0.1", fake.port), timeout=10) as sock:
            sock.sendall(b"CONNECT chatgpt.com:443 HTTP/1.1\r\nHost: chatgpt.com:443\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 403 ")
        fake.wait_until(lambda f: bool(f.strays), 10, "the CONNECT to be recorded")
        assert fake.strays == ["CONNECT chatgpt.com:443"]

        title = offering("exec")
        title["text"] = {"format": {"type": "json_schema", "name": "codex_output_schema",
                                    "schema": {"properties": {"title": {"type": "string"}}}}}
        status, body = post(fake, title)
        assert status == 200 and json.loads(sse_data(body)[-2]["item"]["content"][0]["text"]) == {"title": "Say hi"}
        assert fake.replies_left == 1 and fake.problems == []

        status, body = post(fake, offering("exec"))
        assert status == 200 and sse_data(body)[-2]["item"]["name"] == "exec_command"
        assert fake.problems == ["the script calls 'exec_command', which the request does not offer "
                                 "(it offers ['exec'])"]


def test_response_events_of_a_message_spell_its_text() -> None:
    events = response_events(say("two  words"), "resp_1", "m")
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == ["two  ", "words"]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "two  words"


# --------------------------------------------------------------------------- codex exec --json


@pytest.mark.timeout(180)
def test_codex_exec_json_completes_a_turn_offline(offline: Callable[..., OfflineCodex], server: Server) -> None:
    """``codex exec --json`` under the supervisor: codex runs the model's command, sends its
    output back, prints the final message and the turn's token usage, and exits 0. The JSON
    lines have the shapes of the capture in tests/fixtures/codex."""
    codex = offline(script())
    prompt = "Run the offline check."
    server.create(name="codex-json", profile="codex", cwd=str(codex.workdir),
                  command=codex.argv("exec", "--json", prompt), env=codex.env)
    events = collect(server, "codex-json", lambda seen: seen[-1].event == "complete", timeout=120)
    assert events[-1].json()["data"]["exit_code"] == 0, [plain(e) for e in events if e.event == "log"]

    lines = json_lines(events)
    assert [line["type"] for line in lines] == [
        "thread.started", "turn.started", "item.started", "item.completed", "item.completed", "turn.completed"]
    started, ran, answer = lines[2]["item"], lines[3]["item"], lines[4]["item"]
    assert started["type"] == ran["type"] == "command_execution" and started["id"] == ran["id"]
    assert started["status"] == "in_progress" and started["exit_code"] is None
    assert COMMAND in ran["command"]
    assert ran["aggregated_output"] == "offline-42\n" and ran["exit_code"] == 0 and ran["status"] == "completed"
    assert answer == {"id": answer["id"], "type": "agent_message", "text": FINAL}
    assert lines[5]["usage"] == {  # the turn's two responses, summed
        "input_tokens": 3200, "cached_input_tokens": 1700, "cache_write_input_tokens": 0,
        "output_tokens": 65, "reasoning_output_tokens": 12}

    assert_offline(codex, "exec")
    assert_turn_went_through(codex, prompt)
    assert all(r.headers.get("originator") == "codex_exec" for r in codex.fake.turns)
    assert [shape(line) for line in lines] == shapes(f"exec-json-{CODEX_VERSION}.jsonl")

    # The codex profile's JSON extractors: the command, the final message, the token usage.
    found = {e.json()["data"]["name"]: e.json()["data"] for e in events if e.event == "extraction"}
    assert found["codex.thread"]["value"] == lines[0]["thread_id"]
    assert (found["codex.command"]["value"], found["codex.command"]["groups"]) == (
        ran["command"], {"exit_code": "0", "status": "completed"})
    assert found["codex.message"]["value"] == FINAL
    assert json.loads(found["codex.usage"]["value"]) == lines[5]["usage"]
    assert found["codex.usage"]["groups"]["output_tokens"] == "65"


@pytest.mark.timeout(180)
def test_codex_exec_json_fails_the_turn_when_the_model_api_refuses(
        offline: Callable[..., OfflineCodex], server: Server) -> None:
    """The model's second request is refused (the script has one reply): codex prints an
    ``error`` line and ``turn.failed`` carrying the API's message, once (no retries), exits 1."""
    codex = offline(script()[:1])
    server.create(name="codex-fails", profile="codex", cwd=str(codex.workdir),
                  command=codex.argv("exec", "--json", "Run it."), env=codex.env)
    events = collect(server, "codex-fails", lambda seen: seen[-1].event == "complete", timeout=120)
    assert events[-1].json()["data"]["exit_code"] == 1
    lines = json_lines(events)
    assert [line["type"] for line in lines] == [
        "thread.started", "turn.started", "item.started", "item.completed", "error", "turn.failed"]
    refusal = json.loads(lines[-1]["error"]["message"])["error"]
    assert refusal["code"] == "fake_responses" and "the script has 1" in refusal["message"]
    assert lines[-2]["message"] == lines[-1]["error"]["message"]
    assert codex.fake.problems == ["request 2 of the conversation, but the script has 1"]
    assert len(codex.fake.turns) == 2 and codex.fake.strays == []
    failed = [e.json()["data"] for e in events if e.event == "extraction" and e.json()["data"]["name"] == "codex.turn_failed"]
    assert [d["value"] for d in failed] == [lines[-1]["error"]["message"]]
    assert [shape(line) for line in lines] == shapes(f"exec-json-failed-{CODEX_VERSION}.jsonl")


# --------------------------------------------------------------------------- the full screen


PROMPT_READY = "Ask Codex to do anything"
TYPED = "run the offline check"


def screen_has(*texts: str) -> Callable[[list[str]], bool]:
    return lambda rows: all(any(text in row for row in rows) for text in texts)


def supervised_tui(server: Server, codex: OfflineCodex, name: str) -> list[str]:
    """The full screen under the supervisor: the prompt typed through ``/input``; the rows of
    its virtual screen (``GET /screen``) once the answer and the end of the turn are on it."""
    server.create(name=name, profile="codex", cwd=str(codex.workdir), command=codex.argv(),
                  env=codex.env, cols=120, rows=40)
    try:
        supervised_screen(server, name, PROMPT_READY, timeout=60)
        assert server.request("POST", f"/api/agents/{name}/input", {"data": TYPED}).status == 204
        supervised_screen(server, name, f"› {TYPED}", timeout=30)
        assert server.request("POST", f"/api/agents/{name}/input", {"data": "\r"}).status == 204
        return supervised_screen(server, name, FINAL, "Worked for", timeout=60)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{codex.fake.summary()}") from None


def require_tmux() -> None:
    if shutil.which("tmux") is None:
        unavailable("tmux is not installed (Debian package tmux)")


def tmux_tui(codex: OfflineCodex) -> tuple[tmux.TmuxPane, list[str]]:
    """The same in tmux at the same size: the screen once the answer is on it."""
    session = tmux.TmuxPane(codex.argv(), 120, 40, cwd=codex.workdir, env=codex.env)
    session.wait_screen(screen_has(PROMPT_READY), 60, "codex's prompt")
    session.type(TYPED)
    session.wait_screen(screen_has(f"› {TYPED}"), 30, "the typed prompt")
    session.press("Enter")
    # The title is asked for aside, and may be drawn after the answer: wait for it too.
    return session, session.wait_screen(screen_has(FINAL, "Worked for", "· Offline turn"), 60,
                                        "the final message and the title")


def transcript(screen: list[str]) -> list[str]:
    """The rows of the turn on a screen: from the prompt as sent to the answer (the "Worked
    for <1s • 20:13" row after it holds a clock time, so it is left out)."""
    start = next(i for i, row in enumerate(screen) if row.startswith(f"› {TYPED}"))
    end = next(i for i, row in enumerate(screen) if "Worked for" in row)
    return [row for row in screen[start:end] if row.strip()]


_SELF_CHANGING = [
    (re.compile(r"codex\d+"), "codexN"),  # each session's own directory (same length)
    (re.compile(r"Worked for [^•]*• \d\d:\d\d"), "Worked for <time> • HH:MM"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<session id>"),
]


def masked(rows: list[str]) -> list[str]:
    """Rows with what changes by itself from session to session masked: the clock time and
    duration of the turn, session ids, the session's own directory."""
    out = []
    for row in rows:
        for pattern, mask in _SELF_CHANGING:
            row = pattern.sub(mask, row)
        out.append(row.rstrip())
    return out


def supervised_screen(server: Server, name: str, *texts: str, timeout: float = 60, run: int | None = None) -> list[str]:
    """``GET /api/agents/<name>/screen``'s rows (of run ``run``, if given) once they hold every
    one of ``texts``."""
    found: list[str] = []

    def ready() -> bool:
        response = server.request("GET", f"/api/agents/{name}/screen")
        if response.status != 200 or run not in (None, response.json()["run"]):
            return False
        found[:] = response.json()["text"]
        return screen_has(*texts)(found)

    try:
        wait_for(ready, timeout, 0.1, f"{texts} on the screen")
    except AssertionError:
        raise AssertionError(f"no {texts} on the screen; it shows:\n" + "\n".join(found)) from None
    return found


def close_and_check_all_gone(session: tmux.TmuxPane) -> None:
    """Kill the tmux server; the program and everything below it end with it."""
    family = {session.pane_pid(), *descendants(session.pane_pid())}
    session.close()
    wait_for(lambda: not any(alive(pid) for pid in family), 15, 0.05, f"the tmux session's processes to end: {family}")


def family_of(server: Server, name: str) -> tuple[dict[str, Any], set[int]]:
    agent = server.get(f"/api/agents/{name}")
    assert agent["state"] == "running", agent
    return agent, {agent["pid"], *descendants(agent["pid"])}


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def process_names(pids: set[int]) -> set[str]:
    names = set()
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names.add(" ".join(os.path.basename(a.decode()) if i == 0 else a.decode()
                           for i, a in enumerate(argv[:2]) if a))
    return names


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_codex_full_screen_completes_a_turn_offline_like_in_tmux(
        offline: Callable[..., OfflineCodex], server: Server, tmp_path: Path) -> None:
    """The full screen, under the supervisor and in tmux: no sign-in, trust or onboarding
    screen comes first; the prompt typed in through ``/input`` runs the command, and the answer
    appears in both. The supervisor's virtual screen (``GET /screen``) is tmux's, row for row,
    but for what changes by itself (the time, the session's directory). ``stop`` ends codex
    and everything it started (no daemon: ``daemon_auto_start = false``)."""
    require_tmux()
    under_supervisor, in_tmux = offline(script()), offline(script())

    supervised_tui(server, under_supervisor, "codex-tui")
    session, screen = tmux_tui(in_tmux)
    try:
        ours = supervised_screen(server, "codex-tui", FINAL, "Worked for", "· Offline turn")
        assert masked(ours) == masked(screen), "\n".join(
            f"row {i}:\n  ours: {a!r}\n  tmux: {b!r}" for i, (a, b) in enumerate(zip(masked(ours), masked(screen))) if a != b)
        assert transcript(ours) == transcript(screen)
        turn = transcript(screen)
        assert [row.strip() for row in turn] == [f"› {TYPED}", f"• Ran {COMMAND}", "└ offline-42", f"• {FINAL}"]
        assert any(row.endswith("· Offline turn") for row in screen), screen  # the title, asked for aside
        # In the agent's stream: the settled screen with the turn on it, and no line fragments
        # of the full screen's redraws.
        def settled_with_answer() -> list[dict[str, Any]]:
            events = server.get("/api/agents/codex-tui/events?limit=10000")["events"]
            return [e for e in events if e["type"] == "screen" and transcript(e["data"]["text"]) == turn]

        wait_for(settled_with_answer, 15, 0.1, "a screen event with the turn")
        logs = [e["data"]["line"] for e in server.get("/api/agents/codex-tui/events?limit=10000")["events"]
                if e["type"] == "log"]
        assert not any(PROMPT_READY in line or FINAL in line for line in logs), logs
        for codex in (under_supervisor, in_tmux):
            assert_offline(codex, "tui")
            assert_turn_went_through(codex, TYPED)
            # The title is asked for while the turn runs, so its place among the two varies.
            assert sorted(r.kind for r in codex.fake.requests if r.kind != "stray") == ["title", "turn", "turn"]
            assert all(r.headers.get("originator") == "codex-tui" for r in codex.fake.turns)
            assert codex.daemons() == {}
    finally:
        close_and_check_all_gone(session)

    agent, family = family_of(server, "codex-tui")
    names = process_names(family)
    assert "codex-code-mode-host --listen" in names, names  # the JavaScript runtime of `exec`
    result = cli("stop", "codex-tui", "--grace", "5", server=server)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not any(alive(pid) for pid in family), 15, 0.05, f"codex and its children to end: {names}")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", MODES)
def test_codex_full_screen_with_its_daemon(
        offline: Callable[..., OfflineCodex], make_server: Callable[..., Server], mode: str) -> None:
    """codex's default, ``daemon_auto_start``: the full screen starts ``codex app-server
    --managed-daemon`` and its updater loop, each in a session of its own, and the turn runs
    in the daemon. They are the agent's processes all the same: ``stop`` ends them with codex
    (in the cgroup and in the subreaper mode), and a second session on the same CODEX_HOME
    starts a daemon of its own and shows its prompt, with no "control socket is already in use"."""
    need(mode)
    server = make_server(env={"AGENT_SUPERVISOR_CONTAINMENT": mode})
    assert server.get("/api/agents")["agents"] == []
    codex = offline(script(), daemon=True)
    supervised_tui(server, codex, "codex-daemon")
    assert_offline(codex, "tui")
    assert_turn_went_through(codex, TYPED)

    agent, family = family_of(server, "codex-daemon")
    assert agent["containment"]["mode"] == mode
    daemons = {command.split("/bin/", 1)[1]: pid for pid, command in codex.daemons().items()}
    server_pid = daemons.pop("codex app-server --listen unix:// --analytics-default-enabled --managed-daemon")
    updater_pid = daemons.pop("codex app-server daemon pid-update-loop")
    host_pid = daemons.pop("codex-code-mode-host --listen grpc+stdio://")
    assert daemons == {}
    assert parent(host_pid) == server_pid  # the turn's tools ran in the daemon, not in codex
    assert os.getsid(server_pid) == server_pid and os.getsid(updater_pid) == updater_pid  # setsid()
    assert os.getsid(agent["pid"]) not in {os.getsid(server_pid), os.getsid(host_pid)}
    assert {server_pid, updater_pid, host_pid} <= set(marked_processes(run_marks(server), "codex-daemon"))

    stop_and_check_nothing_left(server, codex, "codex-daemon", family | {server_pid, updater_pid, host_pid})

    # The next session on the same home: a daemon of its own, its prompt, no complaint.
    server.create(name="codex-daemon", profile="codex", cwd=str(codex.workdir), command=codex.argv(),
                  env=codex.env, cols=120, rows=40)

    rows = supervised_screen(server, "codex-daemon", PROMPT_READY, timeout=60, run=2)
    events = server.get("/api/agents/codex-daemon/events?limit=10000")["events"]
    assert not [e for e in events if "already in use" in json.dumps(e)] and not [r for r in rows if "already in use" in r]
    second = wait_for(lambda: {pid for pid, command in codex.daemons().items() if "--managed-daemon" in command},
                      30, 0.1, "the second session's daemon")
    assert server_pid not in second
    _, family = family_of(server, "codex-daemon")
    stop_and_check_nothing_left(server, codex, "codex-daemon", family | set(codex.daemons()))
    assert_offline(codex, "tui")


def run_marks(server: Server) -> set[str]:
    return {server_id_for(server.data_dir)}


def stop_and_check_nothing_left(server: Server, codex: OfflineCodex, name: str, pids: set[int]) -> None:
    """``agent-supervisor stop`` ends codex, its daemons and everything else the run started
    (nothing carries the run's mark any more), and ``complete`` counts them."""
    alive_at_stop = {pid for pid in pids if alive(pid)}
    result = cli("stop", name, "--grace", "5", server=server)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not any(alive(pid) for pid in pids), 15, 0.05, f"codex and its daemons to end: {pids}")
    assert codex.daemons() == {}
    assert marked_processes(run_marks(server), name) == {}
    done = [e for e in server.get(f"/api/agents/{name}/events?after=0&limit=10000")["events"]
            if e["type"] == "complete"][-1]["data"]
    # At least every process known to be alive at the stop (codex, its daemon, ...): how many
    # more (updaters, workers) exist at that moment depends on how far codex had got.
    assert done["ended"] >= len(alive_at_stop), (done, alive_at_stop)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_codex_full_screen_asks_first_whether_to_trust_a_repository(
        offline: Callable[..., OfflineCodex], tmp_path: Path) -> None:
    """In a git repository the config does not trust, the full screen asks before its prompt;
    Enter trusts it, and codex writes the ``projects`` entry that the other tests give it."""
    require_tmux()
    codex = offline([], trusted=False)
    session = tmux.TmuxPane(codex.argv(), cwd=codex.workdir, env=codex.env)
    try:
        session.wait_screen(screen_has("Trust this folder?", "1. Trust and continue"), 60, "the trust question")
        # codex can draw the question a moment before it reads keys: while the question stays
        # on screen, Enter is pressed again (as a person would), up to the deadline.
        deadline = time.monotonic() + 30
        while True:
            session.press("Enter")
            try:
                session.wait_screen(screen_has(PROMPT_READY), 2, "codex's prompt")
                break
            except AssertionError:
                if time.monotonic() > deadline or not screen_has("Trust this folder?")(session.capture()):
                    raise
        config = (codex.codex_home / "config.toml").read_text()
        assert f'[projects."{codex.workdir}"]\ntrust_level = "trusted"' in config, config
        assert codex.fake.turns == []  # nothing was asked of the model
        assert_offline(codex, "tui")
    finally:
        close_and_check_all_gone(session)


SIGN_IN_URL = re.compile(r"https://auth\.openai\.com/oauth/authorize\?\S+")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_codex_sign_in_url_drawn_over_four_rows_is_extracted_whole(
        offline: Callable[..., OfflineCodex], server: Server, tmp_path: Path) -> None:
    """A new user's first screen (issue 15): codex's sign-in menu, then, after Enter, "Finish
    signing in via your browser" with the sign-in URL that ratatui draws over four rows of a
    120-column screen (no soft wrap: a cursor move before each row). The settled screen is a
    ``screen`` event with every character of the rows, and the ``url`` extractor of the codex
    profile reads the URL from it whole: exactly the URL codex handed to the browser (a
    ``$BROWSER`` that writes it down). The URL's first row alone is never extracted."""
    codex = offline([], signed_in=False)
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {opened}\n')
    browser.chmod(0o755)
    server.create(name="codex-login", profile="codex", cwd=str(codex.workdir), command=codex.argv(),
                  env={**codex.env, "BROWSER": str(browser)}, cols=120, rows=30)
    menu = ("1. Sign in with ChatGPT", "Press enter to continue")
    supervised_screen(server, "codex-login", *menu)
    # Under load codex can draw its menu before it reads keys, and an Enter then is lost (once
    # in a loaded full run): press it again while the menu is still what the screen shows.
    deadline = time.monotonic() + 60
    while True:
        assert server.request("POST", "/api/agents/codex-login/input", {"data": "\r"}).status == 204
        try:
            rows = supervised_screen(server, "codex-login", "Finish signing in via your browser",
                                     "Press esc to cancel", timeout=5)
            break
        except AssertionError:
            if time.monotonic() > deadline or not screen_has(*menu)(supervised_screen(server, "codex-login")):
                raise
    wait_for(opened.exists, 15, 0.05, "codex to open the browser")
    url = opened.read_text().strip()
    assert SIGN_IN_URL.fullmatch(url), url
    first = next(i for i, row in enumerate(rows) if "https://auth.openai.com" in row)
    url_rows = [row.strip() for row in rows[first:first + 4]]
    assert "".join(url_rows) == url and all(len(row) > 60 for row in url_rows), rows  # four rows

    def screen_urls() -> list[dict[str, Any]]:
        events = server.get("/api/agents/codex-login/events?limit=10000")["events"]
        return [e["data"] for e in events if e["type"] == "extraction" and e["data"]["name"] == "url"]

    found = wait_for(screen_urls, 15, 0.1, "the url extracted from the settled screen")
    assert [(d["value"], d["source"], d["row"], d["rows"]) for d in found] == [(url, "screen", first, 4)]
    settled = [e["data"] for e in server.get("/api/agents/codex-login/events?limit=10000")["events"]
               if e["type"] == "screen"]
    assert screen_has("Finish signing in via your browser", "Press esc to cancel")(settled[-1]["text"])
    assert settled[-1]["alternate"]
    logs = [e["data"]["line"] for e in server.get("/api/agents/codex-login/events?limit=10000")["events"]
            if e["type"] == "log"]
    assert not [line for line in logs if "Fini" in line or "cancel" in line or "https://" in line], logs
    assert server.request("POST", "/api/agents/codex-login/input", {"data": "\x1b"}).status == 204
    supervised_screen(server, "codex-login", "1. Sign in with ChatGPT")
    assert codex.fake.turns == []
    assert codex.fake.problems == [], codex.fake.summary()
    result = cli("stop", "codex-login", "--grace", "5", server=server)
    assert result.returncode == 0, result.stderr
    server.wait_state("codex-login", "exited", timeout=30)


# --------------------------------------------------------------------------- the dashboard


def xterm_rows(page: Any) -> list[str]:
    """What the Screen view's xterm.js holds, row by row (trailing blanks left out)."""
    rows: list[str] = page.evaluate(
        """() => { const t = window.agentSupervisor.screen.term; if (!t) return [];
                   const b = t.buffer.active;
                   return [...Array(t.rows).keys()].map((i) => b.getLine(i).translateToString(true).trimEnd()); }""")
    return rows


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(240)
def test_codex_full_screen_in_the_dashboards_screen_view(
        offline: Callable[..., OfflineCodex], server: Server, page: Any) -> None:
    """The dashboard's Screen view of the real codex TUI in Chromium: the welcome (the
    ">_ OpenAI Codex" box and the prompt) is there at 120x40; a prompt typed into the view
    runs the turn and the answer appears; the view holds what GET /screen holds. Screenshots
    of both go to CI's output."""
    from playwright.sync_api import expect

    from support.browser import output_dir, screenshot

    codex = offline(script())
    server.create(name="codex-view", profile="codex", cwd=str(codex.workdir), command=codex.argv(),
                  env=codex.env, cols=120, rows=40)
    page.goto(f"{server.dashboard}#agent=codex-view")
    expect(page.locator("#tab-screen")).to_have_attribute("aria-selected", "true", timeout=60_000)

    def shows(*texts: str) -> Callable[[], bool]:
        return lambda: screen_has(*texts)(xterm_rows(page))

    wait_for(shows("OpenAI Codex (v0.169.0)", PROMPT_READY), 60, 0.1, "the welcome in the Screen view")
    assert page.evaluate("window.agentSupervisor.screen.term.cols") == 120
    screenshot(page, "codex-screen-welcome")

    page.locator("#screen-term").click()
    page.keyboard.type(TYPED, delay=25)
    wait_for(shows(f"› {TYPED}"), 30, 0.1, "the typed prompt in the Screen view")
    page.keyboard.press("Enter")
    wait_for(shows(FINAL, "Worked for"), 90, 0.1, "the answer in the Screen view")
    screenshot(page, "codex-screen-answer")
    page.locator("#screen-term").screenshot(path=str(output_dir() / "codex-screen-answer-terminal.png"))
    wait_for(lambda: xterm_rows(page) == [row.rstrip() for row in server.get("/api/agents/codex-view/screen")["text"]],
             15, 0.1, "the view to hold the screen")
    assert_offline(codex, "tui")
    assert_turn_went_through(codex, TYPED)
    assert server.request("POST", "/api/agents/codex-view/stop", {"grace_s": 5}).status == 202
    server.wait_state("codex-view", "exited", timeout=30)
