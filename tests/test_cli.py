"""The ``agent-supervisor`` command line, run as a subprocess against a real server.

Every command is exercised the way a person runs it: output piped (so colours are stripped and
partial lines skipped), exit statuses checked, expected failures checked to be one line without
a traceback. Waits have deadlines; nothing sleeps to synchronise.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.cli.render import Renderer, Status

from support import ROOT
from support.cli import CLI_TIMEOUT, LiveCli, cli, cli_env, cli_here, one_line_error
from support.net import TcpProxy, closed_port
from support.processes import Server, alive, descendants, python_agent
from support.waiting import wait_for

DEMO = str(ROOT / "supervisor" / "demo_agent.py")
@pytest.fixture
def live() -> Iterator[Callable[..., LiveCli]]:
    """Start CLI subprocesses that are killed at the end of the test if still running."""
    started: list[LiveCli] = []

    def start(*args: str, env: dict[str, str]) -> LiveCli:
        started.append(LiveCli(*args, env=env))
        return started[-1]

    yield start
    for item in started:
        item.close()


def history(server: Server, name: str) -> list[dict[str, Any]]:
    """Every retained event of ``name`` from the REST endpoint."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = server.get(f"/api/agents/{name}/events?after={after}&limit=10000")
        if not page["events"]:
            return events
        events += page["events"]
        after = page["events"][-1]["id"]


def final_lines(server: Server, name: str, run: int | None = None) -> list[str]:
    """The complete (not partial) log lines of ``name`` without escape sequences, in order."""
    lines = []
    for event in history(server, name):
        data = event["data"]
        if event["type"] == "log" and not data.get("partial") and run in (None, data["run"]):
            lines.append(data.get("plain", data["line"]))
    return lines


def counter_agent(count: int, delay: float) -> list[str]:
    """An agent printing ``line 1`` .. ``line COUNT``, one every ``delay`` seconds."""
    return python_agent(f"import time\nfor i in range(1, {count + 1}):\n"
                        f"    print('line', i, flush=True); time.sleep({delay})")


# --------------------------------------------------------------------------- run


def test_run_prints_every_line_once_and_exits_with_the_agents_code(server: Server) -> None:
    """``run`` of the demo agent prints exactly the agent's lines, once each, without colour
    when piped, extractions on stderr, and exits with the agent's own exit code."""
    result = cli("run", "demo", "--", sys.executable, DEMO, "--fast", "--exit-code", "3",
                 server=server)
    assert result.returncode == 3, result.stderr
    printed = result.stdout.splitlines()
    assert printed == final_lines(server, "demo")
    assert printed.count("Demo Agent v1.4.2 (a stand-in for codex)") == 1
    assert "tokens used: 13,114" in printed
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert "» tokens = 1,498" in result.stderr
    assert "» warning = no AGENTS.md found; using defaults" in result.stderr
    assert "demo exited with code 3" in result.stderr


@pytest.mark.parametrize(("code", "expected"), [
    ("print('bye'); raise SystemExit(0)", 0),
    ("print('bye'); raise SystemExit(7)", 7),
    ("import os, signal; print('bye', flush=True); os.kill(os.getpid(), signal.SIGTERM)", 143),
], ids=["zero", "seven", "killed-by-sigterm"])
def test_run_exit_status(server: Server, code: str, expected: int) -> None:
    """``run`` exits with the agent's code, or 128 + the signal that killed it, as a shell does."""
    result = cli("run", "exiter", "--", *python_agent(code), server=server)
    assert result.returncode == expected, result.stderr
    assert result.stdout == "bye\n"


def test_run_again_shows_only_the_new_run(server: Server) -> None:
    """Re-running a name whose history holds an earlier run prints only the new run's lines."""
    first = cli("run", "twice", "--", *python_agent("print('one')"), server=server)
    second = cli("run", "twice", "--", *python_agent("print('two')"), server=server)
    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert (first.stdout, second.stdout) == ("one\n", "two\n")


def test_run_json_parses_line_by_line(server: Server) -> None:
    """``run --json`` prints one event envelope per line, ids increasing, ending with complete."""
    result = cli("run", "js", "--json", "--extract", r"step=step (?P<value>\d)/4", "--",
                 sys.executable, DEMO, "--fast", server=server)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    ids = [event["id"] for event in events]
    assert ids == sorted(set(ids))
    assert {"state", "log", "extraction", "complete"} <= {event["type"] for event in events}
    assert all(event["agent_name"] == "js" for event in events)
    assert events[-1]["type"] == "complete" and events[-1]["data"]["exit_code"] == 0
    steps = [e["data"]["value"] for e in events if e["type"] == "extraction" and e["data"]["name"] == "step"]
    assert steps == ["1", "2", "3", "4"]
    found = {e["data"]["name"] for e in events if e["type"] == "extraction"}
    assert {"tokens", "warning", "error", "url"} <= found


def test_run_with_a_profile(server: Server) -> None:
    """``run --profile`` starts the profile's command with the arguments after ``--``."""
    result = cli("run", "ver", "--profile", "shell", "--", "-c", "echo from-the-shell",
                 server=server)
    assert result.returncode == 0, result.stderr
    assert "from-the-shell" in result.stdout.splitlines()


def test_run_bad_regex_is_one_line(server: Server) -> None:
    """An extractor that does not compile is the server's one-line message, status 1."""
    result = cli("run", "bad", "--extract", "broken=(", "--", "true", server=server)
    assert result.returncode == 1
    assert "broken" in one_line_error(result)
    assert server.request("GET", "/api/agents/bad").status == 404


def test_run_missing_executable_exits_127(server: Server) -> None:
    """A command the server cannot find is one line and status 127, as in a shell."""
    result = cli("run", "nothere", "--", "/no/such/program", server=server)
    assert result.returncode == 127
    assert "/no/such/program" in one_line_error(result)


# --------------------------------------------------------------------------- bad input, no server


@pytest.mark.parametrize("args", [
    ("frobnicate",), ("run", "x", "--bogus", "--", "true"), ("run",), ("run", "x"),
    ("tail",), ("tail", "x", "--all"), ("tail", "x", "--last", "many"), ("stop",), ("send", "x"),
    ("run", "x", "--extract", "no-equals-sign", "--", "true"), ("list", "--what"), ("restart",), ("rm",),
], ids=lambda a: " ".join(a))
def test_bad_command_lines_are_one_line_and_status_2(args: tuple[str, ...], capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A command line that cannot work fails at once with one line and status 2."""
    result = cli_here(capsys, monkeypatch, *args, url=f"http://127.0.0.1:{closed_port()}")
    assert result.returncode == 2
    one_line_error(result)


@pytest.mark.parametrize("args", [
    ("list",), ("stats",), ("tail", "x"), ("stop", "x"), ("send", "x", "hi"),
    ("run", "x", "--", "true"), ("tail", "--all"), ("restart", "x"), ("rm", "x"),
], ids=lambda a: " ".join(a))
def test_server_down_is_one_line_and_status_1(args: tuple[str, ...], capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With no server at the URL every command says so in one line and exits 1."""
    port = closed_port()
    result = cli_here(capsys, monkeypatch, *args, url=f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    line = one_line_error(result)
    assert f"127.0.0.1:{port}" in line and "refused" in line


@pytest.mark.parametrize("args", [("tail", "ghost"), ("stop", "ghost"), ("send", "ghost", "hi"),
                                  ("restart", "ghost"), ("rm", "ghost")],
                         ids=lambda a: " ".join(a))
def test_unknown_agent_is_one_line(server: Server, args: tuple[str, ...]) -> None:
    """Naming an agent that does not exist is the server's one-line 404 message, status 1."""
    result = cli(*args, server=server)
    assert result.returncode == 1
    assert "ghost" in one_line_error(result)


def test_url_flag_before_or_after_the_command(server: Server) -> None:
    """``--url`` works before and after the command name, and beats the environment."""
    env = cli_env(AGENT_SUPERVISOR_URL=f"http://127.0.0.1:{closed_port()}", AGENT_SUPERVISOR_TOKEN=server.token or "")
    assert cli("--url", server.url, "list", env=env).returncode == 0
    assert cli("list", "--url", server.url, env=env).returncode == 0


def test_token_from_the_environment(make_server: Callable[..., Server]) -> None:
    """With a token on the server, the CLI sends $AGENT_SUPERVISOR_TOKEN; without it, one line."""
    server = make_server(token="s3cret-token-0123")
    assert cli("list", server=server).returncode == 0
    result = cli("list", env=cli_env(AGENT_SUPERVISOR_URL=server.url))
    assert result.returncode == 1
    assert "token" in one_line_error(result).lower()
    assert cli("list", "--token", "s3cret-token-0123",
               env=cli_env(AGENT_SUPERVISOR_URL=server.url)).returncode == 0


def default_data_dir_server(home: Path) -> Server:
    """A server on the data dir ``serve`` uses by default for ``HOME=home``, generated token."""
    data_dir = home / ".local" / "state" / "agent-supervisor"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return Server(data_dir, [], {"HOME": str(home)}).start()


@pytest.mark.slow
def test_cli_with_no_flags_finds_the_server_and_its_generated_token(tmp_path: Path) -> None:
    """The user who started the server needs no flag and no variable: the CLI reads the data
    dir's server.json; ``token`` prints the token and ``token --link`` the dashboard link."""
    server = default_data_dir_server(tmp_path)
    try:
        env = cli_env(HOME=str(tmp_path))
        assert not [k for k in env if k.startswith("AGENT_SUPERVISOR_")]
        ran = cli("run", "plain", "--", "echo", "found it", env=env)
        assert ran.returncode == 0 and ran.stdout == "found it\n", ran.stderr
        listed = cli("list", env=env)
        assert listed.returncode == 0 and "plain" in listed.stdout
        assert cli("token", env=env).stdout == f"{server.token}\n"
        assert cli("token", "--link", env=env).stdout == f"{server.dashboard}\n"
        # Somebody else's URL does not get this server's token.
        other = cli("token", "--url", f"http://127.0.0.1:{closed_port()}", env=env)
        assert "no token" in one_line_error(other)
    finally:
        server.stop()


@pytest.mark.slow
def test_a_second_server_on_another_data_dir_is_told_apart(tmp_path: Path) -> None:
    """Two servers, two data dirs, two tokens: --data-dir (or $AGENT_SUPERVISOR_DATA_DIR) picks
    the one to talk to, and with neither the default data dir's server answers."""
    first = default_data_dir_server(tmp_path)
    second = Server(tmp_path / "other", [], {"HOME": str(tmp_path)}).start()
    try:
        assert first.token != second.token
        second.create(name="only-in-second", command=["true"])
        env = cli_env(HOME=str(tmp_path))
        assert "only-in-second" not in cli("list", env=env).stdout
        assert "only-in-second" in cli("--data-dir", str(tmp_path / "other"), "list", env=env).stdout
        assert "only-in-second" in cli("list", "--data-dir", str(tmp_path / "other"), env=env).stdout
        by_env = cli("list", env=cli_env(HOME=str(tmp_path), AGENT_SUPERVISOR_DATA_DIR=str(tmp_path / "other")))
        assert "only-in-second" in by_env.stdout
        assert cli("token", "--data-dir", str(tmp_path / "other"), env=env).stdout.strip() == second.token
    finally:
        second.stop()
        first.stop()


def test_a_stale_runtime_file_is_named_in_the_error(tmp_path: Path) -> None:
    """After a SIGKILL the runtime file stays; the CLI's one-line error says where the URL came
    from and that its server is not running. With no file at all, ``token`` says what to do."""
    server = default_data_dir_server(tmp_path)
    server.stop(signal.SIGKILL)
    env = cli_env(HOME=str(tmp_path))
    line = one_line_error(cli("list", env=env))
    assert "server.json" in line and "not running" in line
    (tmp_path / ".local" / "state" / "agent-supervisor" / "server.json").unlink()
    line = one_line_error(cli("token", env=env))
    assert "is `agent-supervisor serve` running" in line


class Listener:
    """A plain TCP listener on 127.0.0.1 that keeps what every connection sends (whatever now
    listens on the port of a server that died) and answers an empty agent list."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        body = b'{"agents": []}'
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.received.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (len(body), body))

    def close(self) -> None:
        self.sock.close()
        self._thread.join(5)


@pytest.mark.slow
def test_a_dead_servers_runtime_file_sends_its_token_nowhere(tmp_path: Path) -> None:
    """server.json left by a killed server (its pid gone), with something else now listening on
    its port: the CLI sends nothing there and says the server is not running; given that URL
    explicitly, it goes there without the file's token. ``token`` says not running too, with a
    token in the file or without (a --no-token server)."""
    from supervisor import runtime

    listener = Listener()
    data = tmp_path / "data"
    data.mkdir()
    dead = 2**22 + 4321
    try:
        runtime.write_runtime_file(data, listener.url, "STATIC-TOKEN-of-a-dead-server", pid=dead)
        env = cli_env(HOME=str(tmp_path))
        line = one_line_error(cli("list", "--data-dir", str(data), env=env))
        assert "not running" in line and str(data / "server.json") in line and f"pid {dead}" in line
        assert listener.received == []
        listed = cli("list", "--url", listener.url, "--data-dir", str(data), env=env)
        assert listed.returncode == 0, listed.stderr
        (head,) = listener.received
        assert b"GET /api/agents" in head and b"authorization" not in head.lower()
        assert b"STATIC-TOKEN" not in head
        assert "not running" in one_line_error(cli("token", "--data-dir", str(data), env=env))
        runtime.write_runtime_file(data, listener.url, None, pid=dead)
        assert "not running" in one_line_error(cli("token", "--data-dir", str(data), env=env))
        assert "not running" in one_line_error(cli("token", "--url", listener.url, "--data-dir", str(data), env=env))
        assert len(listener.received) == 1
    finally:
        listener.close()


# --------------------------------------------------------------------------- tail


def test_tail_last_lines_and_from_start(server: Server) -> None:
    """``tail`` prints the last 10 lines, ``-n N`` the last N, ``--from-start`` all of them."""
    server.create(name="count", command=counter_agent(25, 0))
    server.wait_state("count", "exited")
    assert cli("tail", "count", "-n", "3", server=server).stdout == "line 23\nline 24\nline 25\n"
    assert cli("tail", "count", server=server).stdout.splitlines() == [f"line {i}" for i in range(16, 26)]
    result = cli("tail", "count", "--from-start", server=server)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [f"line {i}" for i in range(1, 26)]


def test_tail_json_parses_line_by_line(server: Server) -> None:
    """``tail --json --from-start`` prints every event as one JSON object per line."""
    server.create(name="tj", command=counter_agent(5, 0))
    server.wait_state("tj", "exited")
    result = cli("tail", "tj", "--from-start", "--json", server=server)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["data"]["line"] for e in events if e["type"] == "log"] == [f"line {i}" for i in range(1, 6)]
    assert events[-1]["type"] == "complete"


def test_tail_follow_ends_at_complete(server: Server, live: Callable[..., LiveCli]) -> None:
    """``tail -f`` of a running agent prints its lines as they come and ends at its end."""
    server.create(name="slow", command=counter_agent(30, 0.02))
    tail = live("tail", "slow", "--follow", "--from-start", "--exit-code", env=cli_env(server))
    assert tail.finish() == 0
    assert tail.out == [f"line {i}" for i in range(1, 31)]


@pytest.mark.slow
def test_tail_survives_a_dropped_connection(server: Server, live: Callable[..., LiveCli]) -> None:
    """When the connection drops mid-stream, ``tail -f`` reconnects with Last-Event-ID and its
    output has no gap and no duplicate."""
    proxy = TcpProxy("127.0.0.1", server.port)
    try:
        server.create(name="feed", command=counter_agent(300, 0.01))
        tail = live("tail", "feed", "--follow", "--from-start",
                    env=cli_env(AGENT_SUPERVISOR_URL=proxy.url, AGENT_SUPERVISOR_TOKEN=server.token or ""))
        tail.wait_out(lambda out: len(out) >= 30, what="30 lines before the cut")
        # The first lines may come from the history page, before the stream is open: cut only
        # once the server counts the stream's client, so the cut drops the stream itself.
        wait_for(lambda: server.get("/api/sse/stats")["agents"].get("feed", 0) >= 1, 15, 0.02,
                 "tail's stream to be open")
        assert server.get("/api/agents/feed")["state"] == "running"  # the cut is mid-stream
        proxy.drop()
        assert tail.finish() == 0, tail.err
        assert tail.out == [f"line {i}" for i in range(1, 301)]
        heads = proxy.stream_heads()
        assert len(heads) >= 2, heads
        assert "last-event-id: " in heads[1].lower()
        assert any("reconnect" in line for line in tail.err)
    finally:
        proxy.close()


@pytest.mark.slow
def test_tail_survives_a_server_restart(make_server: Callable[..., Server], tmp_path: Path,
                                        live: Callable[..., LiveCli]) -> None:
    """When the server dies (SIGKILL) mid-stream and comes back on the same port and data, ``tail
    -f`` waits, reconnects, and prints exactly the history the server kept: no gap, no duplicate.
    The new server generated a new token: the client, which found the first in server.json,
    finds the new one there too."""
    data_dir = tmp_path / "kept"
    first = make_server(data_dir=data_dir)
    agent = first.create(name="survivor", command=counter_agent(2000, 0.005))
    tail = live("tail", "survivor", "--follow", "--from-start", "--data-dir", str(data_dir), env=cli_env())
    try:
        tail.wait_out(lambda out: len(out) >= 50, what="50 lines before the kill")
        first.stop(signal.SIGKILL)
        second = make_server(data_dir=data_dir, port=first.port)
        assert second.token != first.token
        assert tail.finish() == 0, tail.err
        kept = final_lines(second, "survivor")
        assert len(kept) >= 50
        assert tail.out == kept == [f"line {i}" for i in range(1, len(kept) + 1)]
        assert second.get("/api/agents/survivor")["state"] == "lost"
    finally:
        for pid in [agent["pid"], *descendants(agent["pid"])]:
            if alive(pid):  # the agent outlived its server: clean up
                os.kill(pid, signal.SIGKILL)


def test_tail_all_prefixes_names_and_ends_on_ctrl_c(server: Server, live: Callable[..., LiveCli]) -> None:
    """``tail --all`` shows every agent's lines prefixed with its name; Ctrl-C ends it quietly."""
    tail = live("tail", "--all", env=cli_env(server))
    wait_for(lambda: server.get("/api/sse/stats")["all_stream_clients"] == 1, 20, 0.02, "tail --all to connect")
    server.create(name="a1", command=python_agent("print('from a1')"))
    server.create(name="a2", command=python_agent("print('from a2')"))
    tail.wait_out(lambda out: {"a1 | from a1", "a2 | from a2"} <= set(out), what="both agents")
    tail.proc.send_signal(signal.SIGINT)
    assert tail.finish() == 130
    assert not any("Traceback" in line for line in tail.err)


# --------------------------------------------------------------------------- control


def test_stop_ends_the_agent_and_its_children(server: Server) -> None:
    """``stop`` waits until the agent ended and every process it started is gone."""
    code = ("import subprocess, time\n"
            "kids = [subprocess.Popen(['sleep', '1000']) for _ in range(2)]\n"
            "print('started', *[k.pid for k in kids], flush=True)\n"
            "time.sleep(1000)\n")
    agent = server.create(name="family", command=python_agent(code))
    wait_for(lambda: any(line.startswith("started") for line in final_lines(server, "family")), 20,
             0.02, "the children to start")
    family = {agent["pid"], *descendants(agent["pid"])}
    assert len(family) >= 3
    result = cli("stop", "family", "--grace", "2", server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("family: exited")
    assert server.get("/api/agents/family")["state"] == "exited"
    wait_for(lambda: not any(alive(pid) for pid in family), 10, 0.02, "every process to be gone")
    again = cli("stop", "family", server=server)
    assert again.returncode == 0 and "not running" in again.stderr


@pytest.mark.slow
def test_restart_starts_the_next_run(server: Server) -> None:
    """``restart`` ends a running agent's run and waits for the next; an ended agent just starts."""
    first = server.create(name="again", command=python_agent("import time; print('up', flush=True); time.sleep(1000)"))
    result = cli("restart", "again", server=server)
    assert result.returncode == 0, result.stderr
    now = server.get("/api/agents/again")
    assert now["run"] == 2 and now["state"] == "running" and now["pid"] != first["pid"]
    assert result.stdout == f"again: running, run 2, pid {now['pid']}\n"
    assert not alive(first["pid"])
    server.create(name="once", command=python_agent("print('done')"))
    server.wait_state("once", "exited")
    result = cli("restart", "once", server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("once: ") and "run 2" in result.stdout
    wait_for(lambda: final_lines(server, "once", run=2) == ["done"], 20, 0.02, "the second run's line")
    assert cli("stop", "again", "--grace", "1", server=server).returncode == 0


@pytest.mark.slow
def test_rm_deletes_and_refuses_a_running_agent_without_force(server: Server) -> None:
    """``rm`` deletes an ended agent and its history; a running one only with ``--force``."""
    server.create(name="old", command=python_agent("print('bye')"))
    server.wait_state("old", "exited")
    result = cli("rm", "old", server=server)
    assert result.returncode == 0 and result.stdout == "old: deleted, with its history\n"
    assert server.request("GET", "/api/agents/old").status == 404
    busy = server.create(name="busy", command=python_agent("import time; time.sleep(1000)"))
    refused = cli("rm", "busy", server=server)
    assert refused.returncode == 2 and "--force" in one_line_error(refused)
    assert server.get("/api/agents/busy")["state"] == "running"
    forced = cli("delete", "busy", "--force", "--grace", "1", server=server)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.endswith("busy: deleted, with its history\n")
    assert server.request("GET", "/api/agents/busy").status == 404
    assert not alive(busy["pid"])


@pytest.mark.slow
def test_send_answers_a_prompt(server: Server) -> None:
    """``send NAME TEXT`` types the text and Enter into the agent, which reads it."""
    server.create(name="asker", command=[sys.executable, DEMO, "--speed", "0", "--prompt-timeout", "30"])
    wait_for(lambda: any("Apply the patch" in line for line in
                         (e["data"]["line"] for e in history(server, "asker") if e["type"] == "log")),
             20, 0.05, "the prompt")
    result = cli("send", "asker", "y", server=server)
    assert result.returncode == 0, result.stderr
    server.wait_state("asker", "exited")
    assert "applied: 1 file changed, 3 insertions(+), 1 deletion(-)" in final_lines(server, "asker")


def test_send_to_an_agent_that_ended(server: Server) -> None:
    """Input for an agent that is not running is refused in one line."""
    server.create(name="gone", command=python_agent("pass"))
    server.wait_state("gone", "exited")
    result = cli("send", "gone", "hello", server=server)
    assert result.returncode == 1
    one_line_error(result)


@pytest.mark.slow
def test_list_shows_a_table(make_server: Callable[..., Server]) -> None:
    """``list`` shows name, state, pid, uptime or exit, lines, clients and what the processes
    cost; ``--json`` the API's."""
    server = make_server()
    server.create(name="done7", command=python_agent("print('x'); raise SystemExit(7)"))
    server.wait_state("done7", "exited")
    agent = server.create(name="busy", command=counter_agent(1000, 0.05))
    result = cli("list", server=server)
    assert result.returncode == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "FROM", "PID", "UPTIME/EXIT", "RESTARTS", "LINES", "CLIENTS", "CPU",
                              "MEM", "PROCS"]
    table = {row.split()[0]: row.split() for row in rows}
    assert table["done7"][1:5] == ["exited", "api", "-", "exit"] and table["done7"][5] == "7"
    assert table["done7"][-3:] == ["-", "-", "-"], "an exited agent costs nothing"
    assert table["busy"][1:4] == ["running", "api", str(agent["pid"])]
    listed = json.loads(cli("list", "--json", server=server).stdout)
    assert {a["name"] for a in listed["agents"]} == {"done7", "busy"}
    assert cli("stop", "busy", "--grace", "1", server=server).returncode == 0


@pytest.mark.slow
def test_stats_table_and_json(make_server: Callable[..., Server]) -> None:
    """``stats`` shows the stream counters readably; ``--json`` prints the endpoint's JSON."""
    server = make_server()
    server.create(name="st", command=python_agent("print('x')"))
    with server.stream("/api/agents/st/stream") as stream:
        stream.until(lambda e: e.event == "complete")
    result = cli("stats", server=server)
    assert result.returncode == 0
    assert "events published" in result.stdout and "clients" in result.stdout
    assert "st" in result.stdout
    raw = json.loads(cli("stats", "--json", server=server).stdout)
    assert {"total_agents", "total_clients", "agents", "events_published", "clients"} <= set(raw)
    assert raw["agents"] == {"st": 0}


# --------------------------------------------------------------------------- serve, packaging


def test_serve_reports_a_taken_port(server: Server, tmp_path: Path) -> None:
    """``serve`` on a port in use exits non-zero with one clear line on stderr."""
    result = cli("serve", "--port", str(server.port), "--data-dir", str(tmp_path / "other"),
                 env=cli_env(HOME=str(tmp_path)))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "already in use" in result.stderr
    assert "serving on" not in result.stdout


def test_serve_refuses_no_token_on_an_open_address(tmp_path: Path) -> None:
    """``serve --host 0.0.0.0 --no-token`` refuses to start, in one line."""
    result = cli("serve", "--host", "0.0.0.0", "--port", "0", "--no-token", "--data-dir", str(tmp_path / "d"),
                 env=cli_env(HOME=str(tmp_path)))
    assert "--no-token" in one_line_error(result)


def test_help_of_every_command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--help`` works for the program and for each command, with status 0 (the program's own
    ``--help`` as a subprocess, the rest in this process)."""
    result = cli("--help")
    assert result.returncode == 0 and "usage: agent-supervisor" in result.stdout, result.stderr
    for args in [("serve",), ("run",), ("tail",), ("stop",), ("restart",), ("rm",), ("send",), ("list",),
                 ("stats",), ("token",)]:
        result = cli_here(capsys, monkeypatch, *args, "--help", url="http://127.0.0.1:1")
        assert result.returncode == 0, (args, result.stderr)
        assert "usage:" in result.stdout


def test_client_commands_do_not_load_the_server() -> None:
    """Importing the CLI loads neither Flask, gevent nor the api package (a plain client)."""
    code = ("import sys, supervisor.cli, supervisor.client\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'gevent', 'api'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=CLI_TIMEOUT)


def test_the_readmes_examples_do_not_clash_with_the_demo_agent() -> None:
    """The README's `run NAME` examples, typed against the server demo.sh starts, must not
    name its agent (run would be refused: that agent is always running)."""
    import re

    from api.server import demo_agent

    names = re.findall(r"^agent-supervisor run (\S+)", (ROOT / "README.md").read_text(), re.M)
    assert names and demo_agent()["name"] not in names, names


def test_demo_agent_runs_standalone() -> None:
    """The demo agent runs without the supervisor, prompt skipped, with the exit code asked for."""
    result = subprocess.run([sys.executable, DEMO, "--fast", "--exit-code", "4"], check=False, capture_output=True,
                            text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 4
    assert "tokens used: 13,114" in result.stdout
    assert "\x1b[" not in result.stdout  # no colour when not on a terminal


@pytest.mark.slow
def test_smoke_script(server: Server) -> None:
    """scripts/test_sse.sh passes against a live server, one PASS line per step: with the token
    in $AGENT_SUPERVISOR_TOKEN, or found by `agent-supervisor token` in the data dir."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "test_sse.sh"), server.url],
                            check=False, capture_output=True, text=True, timeout=60,
                            env=cli_env(AGENT_SUPERVISOR_TOKEN=server.token or ""))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASS") >= 6
    assert "FAIL" not in result.stdout + result.stderr
    found = subprocess.run(["bash", str(ROOT / "scripts" / "test_sse.sh"), server.url], check=False,
                           capture_output=True, text=True, timeout=60,
                           env=cli_env(AGENT_SUPERVISOR_DATA_DIR=str(server.data_dir)))
    assert found.returncode == 0, found.stdout + found.stderr


# --------------------------------------------------------------------------- redrawn lines


class _Terminal(io.StringIO):
    """Output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _log(num: int, text: str, redraw: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"line": text, "line_num": num, "run": 1, "stream": "stdout"}
    if redraw:
        data["redraw"] = True
    return {"type": "log", "agent_name": "a", "data": data}


def test_a_redrawn_line_is_redrawn_in_place_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal a redraw goes up to the row of its line, rewrites it and comes back; past
    the screen's height, or over a row that wrapped, it is printed again instead; in a pipe it
    is printed again. Redraws are not counted as lines."""
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size((20, 5)))
    tty = _Terminal()
    renderer = Renderer(tty, Status(io.StringIO()), colour=False)
    for envelope in (_log(1, "deps"), _log(2, "fetch 10%"), _log(2, "fetch 60%", True)):
        renderer.envelope(envelope)
    assert tty.getvalue() == "deps\nfetch 10%\n\x1b7\x1b[1A\r\x1b[2Kfetch 60%\x1b8"
    for num in range(3, 8):
        renderer.envelope(_log(num, f"line {num}"))
    renderer.envelope(_log(1, "deps done", True))  # 7 rows up: off a 5-row screen
    assert tty.getvalue().endswith("line 7\ndeps done\n") and renderer.lines == 7
    renderer.envelope(_log(8, "x" * 30))  # two rows on a 20-column terminal
    renderer.envelope(_log(7, "line 7 again", True))
    assert tty.getvalue().endswith("x" * 30 + "\nline 7 again\n")

    pipe = io.StringIO()
    piped = Renderer(pipe, Status(io.StringIO()), colour=False)
    for envelope in (_log(1, "fetch 10%"), _log(1, "fetch 60%", True)):
        piped.envelope(envelope)
    assert pipe.getvalue() == "fetch 10%\nfetch 60%\n"


# --------------------------------------------------------------------------- screen

#: Draws "hello" on the alternate screen, and "world" under it after a line of input.
SCREEN_AGENT = python_agent(
    "import sys\n"
    "sys.stdout.write('\\x1b[?1049h\\x1b[H\\x1b[2J\\x1b[2;3H\\x1b[33mhello\\x1b[0m'); sys.stdout.flush()\n"
    "sys.stdin.readline()\n"
    "sys.stdout.write('\\x1b[3;3Hworld'); sys.stdout.flush()\n"
    "sys.stdin.readline()\n")


def test_screen_prints_the_screen_and_follows_it_in_a_pipe(server: Server, live: Callable[..., LiveCli]) -> None:
    """``screen NAME`` prints the rows (without the blank ones at the bottom); ``--follow`` in
    a pipe prints a frame whenever the text changes; an agent without a screen is one line,
    status 1."""
    server.create(name="cli-screen", command=SCREEN_AGENT, cols=30, rows=6)
    wait_for(lambda: server.request("GET", "/api/agents/cli-screen/screen").status == 200, 15)
    result = cli("screen", "cli-screen", server=server)
    assert (result.returncode, result.stdout) == (0, "\n  hello\n")
    follow = live("screen", "cli-screen", "--follow", env=cli_env(server))
    follow.wait_out(lambda out: "  hello" in out, what="the first frame")
    assert follow.out[0].startswith("--- cli-screen: run 1, screen ")
    server.request("POST", "/api/agents/cli-screen/input", {"data": "\n"})
    follow.wait_out(lambda out: "  world" in out, what="the frame after the change")
    follow.close()
    server.create(name="cli-lines", command=python_agent("print('x')"))
    result = cli("screen", "cli-lines", server=server)
    assert result.returncode == 1 and "no screen" in one_line_error(result)
    server.request("POST", "/api/agents/cli-screen/stop", {"grace_s": 0})


@pytest.mark.slow
def test_screen_follow_redraws_the_screen_in_a_terminal(server: Server) -> None:
    """On a terminal ``--follow`` draws the agent's screen on the user's alternate screen, with
    the agent's cursor, and redraws the rows that change: fed to a virtual screen of the
    user's size, its rows are the agent's."""
    from supervisor.screen import VirtualScreen

    from support.screen import Step, record

    counting = python_agent(
        "import sys, time\n"
        "sys.stdout.write('\\x1b[?1049h\\x1b[2;3H\\x1b[33mhello\\x1b[0m')\n"
        "for i in range(1, 41):\n"
        "    sys.stdout.write('\\x1b[4;1Hcount %4d' % i); sys.stdout.flush(); time.sleep(0.05)\n"
        "sys.stdout.write('\\x1b[5;1Hdone'); sys.stdout.flush()\n"
        "sys.stdin.readline()\n")
    server.create(name="cli-follow", command=counting, cols=30, rows=6)
    wait_for(lambda: server.request("GET", "/api/agents/cli-follow/screen").status == 200, 15)
    argv = [sys.executable, "-m", "supervisor", "screen", "cli-follow", "--follow"]
    env = {k: v for k, v in cli_env(server).items() if k.startswith("AGENT_SUPERVISOR")}
    data = record(argv, 40, 8, (Step(b"hello"), Step(b"done")), env=env, timeout=20)
    assert data.count(b"count ") > 3  # it was there for the counting: diffs, not one snapshot
    terminal = VirtualScreen(40, 8)
    terminal.feed(data)
    shown = terminal.snapshot()
    agent = server.get("/api/agents/cli-follow/screen")
    assert shown["text"][:6] == agent["text"] and shown["alternate"]
    assert shown["text"][6].startswith(" cli-follow · run 1 · 30x6")
    assert (shown["cursor"]["x"], shown["cursor"]["y"]) == (agent["cursor"]["x"], agent["cursor"]["y"])
    assert "\x1b[0;33mhello" in shown["ansi"][1]
    server.request("POST", "/api/agents/cli-follow/stop", {"grace_s": 0})


@pytest.mark.slow
def test_tail_and_run_show_a_full_screen_programs_settled_screens(server: Server) -> None:
    """A full-screen program prints no lines (its output is its screen's): ``tail`` shows its
    settled screen as a frame of rows on stdout, only the newest one (``--from-start``: each
    one), and ``run`` shows each frame as the screen settles, the final one at the end."""
    def screens() -> list[dict[str, Any]]:
        return [e["data"] for e in history(server, "cli-settled") if e["type"] == "screen"]

    server.create(name="cli-settled", command=SCREEN_AGENT, cols=30, rows=6)
    first = wait_for(screens, 15, 0.05, "the first settled screen")[0]
    result = cli("tail", "cli-settled", server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"--- cli-settled: run 1, screen {first['seq']}, 30x6\n\n  hello\n"
    server.request("POST", "/api/agents/cli-settled/input", {"data": "\n"})
    second = wait_for(lambda: screens()[1:], 15, 0.05, "the second settled screen")[0]
    result = cli("tail", "cli-settled", server=server)
    assert result.stdout == f"--- cli-settled: run 1, screen {second['seq']}, 30x6\n\n  hello\n  world\n"
    result = cli("tail", "cli-settled", "--from-start", server=server)
    assert result.stdout.count("--- cli-settled: run 1, screen ") == 2 and result.stdout.endswith("  world\n")

    done = cli("run", "cli-run-screen", "--cols", "30", "--rows", "6", "--",
               sys.executable, "-c", "import sys; sys.stdout.write('\\x1b[?1049h\\x1b[3;2Hdrawn'); sys.stdout.flush()",
               server=server)
    assert done.returncode == 0, done.stderr
    frames = done.stdout.split("--- cli-run-screen: run 1, screen ")
    assert frames[0] == "" and frames[-1].split("\n", 1)[1] == "\n\n drawn\n", done.stdout
    assert ", final\n" in frames[-1]
    server.request("POST", "/api/agents/cli-settled/stop", {"grace_s": 0})
