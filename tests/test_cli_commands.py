"""The command line's operations (issue 14): --version, start, --json everywhere, resize, the
``--`` hint, tail's run announcements, -n and the pending prompt, the one-key answer after
Ctrl-C (in a real pseudo-terminal), and SIGHUP/SIGTERM detaching ``run``.

Subprocesses against a real server, like tests/test_cli.py; waits have deadlines.
"""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from supervisor import __version__
from supervisor.cli import keys
from supervisor.cli.follow import last_lines

from support import ROOT
from support.cli import LiveCli, cli, cli_env, cli_here, one_line_error
from support.net import closed_port
from support.processes import Server, alive, python_agent
from support.waiting import wait_for

SLEEP = python_agent("import time; print('up', flush=True); time.sleep(60)")
PROMPT = python_agent("import sys, time\nprint('before')\nsys.stdout.write('Continue? [y/N] '); sys.stdout.flush()\n"
                      "line = sys.stdin.readline()\nprint('answer', line.strip())")


@pytest.fixture
def live() -> Iterator[Callable[..., LiveCli]]:
    started: list[LiveCli] = []

    def start(*args: str, env: dict[str, str]) -> LiveCli:
        started.append(LiveCli(*args, env=env))
        return started[-1]

    yield start
    for item in started:
        item.close()


def test_version(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--version`` prints the program and its version, exit 0."""
    result = cli_here(capsys, monkeypatch, "--version", url=f"http://127.0.0.1:{closed_port()}")
    assert result.returncode == 0 and result.stdout.strip() == f"agent-supervisor {__version__}"


def test_run_without_dashes_hints_at_them(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``run x ls -la``: the agent's option is not ours; the one-line error says to use ``--``."""
    for command in ("run", "start"):
        result = cli_here(capsys, monkeypatch, command, "x", "ls", "-la", url=f"http://127.0.0.1:{closed_port()}")
        assert result.returncode == 2
        line = one_line_error(result)
        assert "-la" in line and f"agent-supervisor {command} x [options] -- ls -la" in line


def test_start_returns_once_the_agent_runs(server: Server) -> None:
    """``start`` is ``run`` detached: it returns with the agent running (or exit 1 if it could
    not start); ``--json`` prints the agent."""
    result = cli("start", "bg", "--restart", "never", "--", *SLEEP, server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("bg: running, run 1, pid ") and "tail bg -f" in result.stdout
    assert server.get("/api/agents/bg")["state"] == "running"
    again = cli("start", "bg2", "--json", "--", *SLEEP, server=server)
    agent = json.loads(again.stdout)
    assert agent["name"] == "bg2" and agent["state"] == "running" and agent["origin"] == "api"
    missing = cli("start", "bg3", "--", "no-such-program-xyz", server=server)
    assert missing.returncode == 127 and "no-such-program-xyz" in missing.stderr
    for name in ("bg", "bg2"):
        assert cli("stop", name, "--grace", "1", server=server).returncode == 0


@pytest.mark.slow
def test_json_on_every_command(server: Server) -> None:
    """stop, restart, rm, send, resize, token and list answer with JSON under ``--json``."""
    server.create(name="js", command=PROMPT)
    server.wait_state("js", "running")
    resized = json.loads(cli("resize", "js", "100", "30", "--json", server=server).stdout)
    assert (resized["cols"], resized["rows"]) == (100, 30)
    assert cli("resize", "js", "90", "20", server=server).stdout.strip() == "js: 90x20"
    sent = json.loads(cli("send", "js", "yes", "--json", server=server).stdout)
    assert sent == {"name": "js", "sent": "yes\r"}
    server.wait_state("js", "exited")
    restarted = json.loads(cli("restart", "js", "--json", server=server).stdout)
    assert restarted["run"] == 2 and restarted["state"] == "running"
    stopped = json.loads(cli("stop", "js", "--json", "--grace", "1", server=server).stdout)
    assert stopped["state"] == "exited"
    assert json.loads(cli("rm", "js", "--json", server=server).stdout) == {"name": "js", "deleted": True}
    token = json.loads(cli("token", "--json", server=server).stdout)
    assert token["url"] == server.url and token["token"] == server.token
    assert "js" not in cli("list", "--names", server=server).stdout.split()


@pytest.mark.slow
def test_tail_announces_each_run_and_prints_the_pending_prompt(server: Server) -> None:
    """``tail`` notes every run's start; ``-n`` counts complete lines only (text and --json);
    a prompt that waits is printed last, even in a pipe."""
    server.create(name="tp", command=PROMPT)
    wait_for(lambda: server.get("/api/agents/tp")["waiting_input"], 15, 0.05, "tp to wait at its prompt")
    text = cli("tail", "tp", "-n", "1", server=server)
    assert text.stdout == "before\nContinue? [y/N] \n"
    assert "tp waits for input: 'Continue? [y/N] '" in text.stderr
    events = [json.loads(line) for line in cli("tail", "tp", "-n", "1", "--json", server=server).stdout.splitlines()]
    logs = [e["data"] for e in events if e["type"] == "log"]
    assert [d["line"] for d in logs if not d.get("partial")] == ["before"]
    assert logs[-1]["partial"] and logs[-1]["line"] == "Continue? [y/N] "
    assert cli("send", "tp", "y", server=server).returncode == 0
    server.wait_state("tp", "exited")
    assert cli("restart", "tp", server=server).returncode == 0
    both = cli("tail", "tp", "--from-start", server=server)
    assert "tp: run 1 starting" in both.stderr and "tp: run 2 starting" in both.stderr
    cli("send", "tp", "n", server=server)


def test_last_lines_counts_complete_lines() -> None:
    """A partial line and its final version are one line; a trailing prompt is kept, uncounted."""
    def log(line_num: int, partial: bool = False) -> dict[str, Any]:
        data: dict[str, object] = {"run": 1, "line_num": line_num, "line": str(line_num)}
        if partial:
            data["partial"] = True
        return {"type": "log", "data": data}

    events: list[dict[str, Any]] = [log(1), log(2, True), log(2), {"type": "extraction", "data": {}}, log(3),
                                    log(4, True)]
    assert last_lines(events, 2) == events[1:]
    assert last_lines(events, 1) == events[4:]
    assert last_lines(events, 0) == []


@pytest.mark.slow
def test_list_shows_who_waits_for_input(server: Server) -> None:
    """``list`` marks an agent at its prompt, and says how to answer it."""
    server.create(name="lw", command=PROMPT)
    wait_for(lambda: server.get("/api/agents/lw")["waiting_input"], 15, 0.05, "lw to wait")
    result = cli("list", server=server)
    row = next(line for line in result.stdout.splitlines() if line.startswith("lw "))
    assert "running, waiting for input" in row
    assert "lw waits for input" in result.stderr and "send lw" in result.stderr
    cli("send", "lw", "y", server=server)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_detaches_run(server: Server, live: Callable[..., LiveCli], sig: signal.Signals) -> None:
    """SIGHUP or SIGTERM to ``run`` lets go of the agent (it keeps running) and says so."""
    name = f"det-{sig.name.lower()}"
    run = live("run", name, "--", *SLEEP, env=cli_env(server))
    run.wait_out(lambda out: "up" in out, what="the agent's first line")
    run.proc.send_signal(sig)
    assert run.finish() == 128 + sig
    assert any(f"{sig.name}: detached; {name} keeps running" in line for line in run.err), run.err
    agent = server.get(f"/api/agents/{name}")
    assert agent["state"] == "running" and alive(agent["pid"])
    assert cli("stop", name, "--grace", "1", server=server).returncode == 0


def _read_until(fd: int, needle: bytes, deadline: float) -> bytes:
    seen = b""
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {needle!r} in {seen[-500:]!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


# Detached: 130 (interrupted); stopped: the agent's own status, killed by SIGTERM (128 + 15).
@pytest.mark.parametrize(("key", "state", "code"), [(b"d", "running", 130), (b"s", "exited", 143)])
def test_after_ctrl_c_one_key_answers(server: Server, key: bytes, state: str, code: int) -> None:
    """In a real terminal, Ctrl-C asks stop or detach and takes one key, no Enter: ``d`` leaves
    the agent running, ``s`` stops it."""
    name = f"key-{key.decode()}"
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on the pty, as a person runs it
        os.chdir(ROOT)
        os.execvpe(sys.executable, [sys.executable, "-m", "supervisor", "run", name, "--", *SLEEP], cli_env(server))
    try:
        deadline = time.monotonic() + 30
        _read_until(fd, b"up", deadline)
        os.write(fd, b"\x03")  # Ctrl-C: the terminal sends SIGINT
        _read_until(fd, b"detach and leave it running [d]? ", deadline)
        os.write(fd, key)  # one key, no Enter
        _read_until(fd, b"detached" if key == b"d" else b"stopping", deadline)
        if key == b"s":
            server.wait_state(name, "exited")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == code
        assert server.get(f"/api/agents/{name}")["state"] == state
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    if state == "running":
        assert cli("stop", name, "--grace", "1", server=server).returncode == 0


def test_read_key_takes_one_key_and_restores_the_terminal() -> None:
    """The key is read in raw mode (no Enter needed) and the terminal is put back exactly as it
    was."""
    master, slave = pty.openpty()

    def type_when_raw(data: bytes) -> threading.Thread:
        def typing() -> None:
            wait_for(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON, 10, 0.005, "raw mode")
            os.write(master, data)

        thread = threading.Thread(target=typing, daemon=True)
        thread.start()
        return thread

    try:
        before = termios.tcgetattr(slave)
        typing = type_when_raw(b"xd")  # x is neither stop nor detach: ignored
        assert keys.answer(slave) == "detach"
        typing.join(10)
        assert termios.tcgetattr(slave) == before
        typing = type_when_raw(b"\r")
        assert keys.answer(slave) == "stop"
        typing.join(10)
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_client_commands_still_load_no_server() -> None:
    """The new modules (keys, completion) keep the client light: no Flask, no gevent."""
    code = ("import sys; import supervisor.cli.commands, supervisor.cli.keys, supervisor.cli.completion\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('flask', 'gevent', 'api')]\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
