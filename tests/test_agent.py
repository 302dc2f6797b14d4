"""Agents end to end in-process: real processes under a real PTY, through lines, extractors,
signals and history. Waits are on conditions (gevent-aware, so the hub keeps running)."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor import events
from supervisor.events import Event
from supervisor.exceptions import (
    AgentNotRunning,
    ExecutableNotFound,
    InvalidCwd,
    InvalidName,
    InvalidRequest,
    UnknownProfile,
)
from supervisor.registry import Registry

from support.agents import history, lines, run_to_end
from support.processes import zombie_children
from support.waiting import gwait

PY = sys.executable


def test_misbehaving_agent_output_becomes_clean_lines(registry: Registry) -> None:
    """CRLF, a progress bar, invalid UTF-8, a 1 MB line and an unterminated prompt all come out
    as the lines a person saw, and the exit code is recorded."""
    code = r"""
import os, sys
w = sys.stdout.buffer.write
w(b"first\r\nsecond\r\n")
for p in range(0, 101, 25):
    w(b"\rprogress %d%%" % p); sys.stdout.flush()
w(b"\n")
w(b"bad \xff\xfe utf8 \xe2\x82\n")
w(b"x" * 1_000_000)
w(b"\n")
w(b"Continue? [y/N] ")
sys.stdout.flush()
os._exit(3)
"""
    agent = run_to_end(registry, name="messy", command=[PY, "-c", code])
    got = lines(registry, "messy")
    assert got[:3] == ["first", "second", "progress 100%"]
    assert got[3].startswith("bad \ufffd\ufffd utf8 \ufffd")
    assert not any(line.endswith("\r") for line in got)
    pieces = [e.data for e in history(registry, "messy", "log") if e.data["line"].startswith("x")]
    assert sum(len(p["line"]) for p in pieces) == 1_000_000
    assert all(len(p["line"]) <= 65536 for p in pieces)
    assert [bool(p.get("continuation")) for p in pieces] == [False] + [True] * (len(pieces) - 1)
    assert got[-1] == "Continue? [y/N] "
    assert agent.exit_code == 3 and agent.signal is None
    states = [e.data["state"] for e in history(registry, "messy", "state")]
    assert states == ["starting", "running", "exited"]
    complete = history(registry, "messy", "complete")
    assert len(complete) == 1 and complete[0].data["exit_code"] == 3


def test_partial_line_is_shown_before_its_newline(registry: Registry) -> None:
    """Text without a newline is published as a partial line within 0.5 s, then completed."""
    registry.create({"name": "prompt", "command": [PY, "-u", "-c",
                     "import sys; sys.stdout.write('Continue? [y/N] '); sys.stdout.flush(); sys.stdin.readline(); print('done')"]})
    # The program waits for input before its newline: a line seen now can only be a partial.
    partial = gwait(lambda: [e for e in history(registry, "prompt", "log") if e.data.get("partial")], 5, "a partial line")
    assert partial[0].data["line"] == "Continue? [y/N] " and partial[0].data["line_num"] == 1
    registry.get("prompt").write("y\n")
    assert registry.get("prompt").wait(10)
    final = [e.data for e in history(registry, "prompt", "log") if not e.data.get("partial")]
    assert final[0]["line_num"] == 1 and final[0]["line"] == "Continue? [y/N] y"
    assert final[0]["echo"] == 1, "the echoed answer is marked"
    assert final[1]["line"] == "done"


def test_sigkill_is_recorded_as_the_signal(registry: Registry) -> None:
    """An agent killed by SIGKILL ends with signal SIGKILL and no exit code."""
    agent = registry.create({"name": "victim", "command": ["sleep", "60"]})
    gwait(lambda: agent.pid, 5)
    assert agent.pid is not None
    os.kill(agent.pid, signal.SIGKILL)
    assert agent.wait(10)
    assert agent.state == "exited" and agent.signal == "SIGKILL" and agent.exit_code is None


def test_stop_kills_grandchild_that_ignores_sigterm(registry: Registry, tmp_path: Path) -> None:
    """stop() ends the whole process group: SIGTERM, then SIGKILL for what ignores it."""
    pidfile = tmp_path / "grandchild.pid"
    code = f"""
import os, signal, sys, time
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open({str(pidfile)!r}, "w").write(str(os.getpid()))
    while True: time.sleep(1)
print("parent waiting", flush=True)
while True: time.sleep(1)
"""
    agent = registry.create({"name": "forker", "command": [PY, "-c", code], "stop_grace_s": 0.5})
    gwait(lambda: pidfile.exists() and pidfile.read_text(), 5, "the grandchild")
    grandchild = int(pidfile.read_text())
    started = time.monotonic()
    registry.stop("forker", wait=True)
    assert time.monotonic() - started < 5
    assert agent.state == "exited"

    def gone() -> bool:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            return True
        # A zombie waiting for init counts as dead.
        with open(f"/proc/{grandchild}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    gwait(gone, 5, "the grandchild to die")


@pytest.mark.slow
def test_a_leftover_that_never_goes_quiet_does_not_keep_the_run_open(registry: Registry) -> None:
    """A leftover that ignores SIGHUP and writes to the terminal every 0.1 s never lets the
    output go quiet: the run still ends (the drain is capped) and the leftover is ended."""
    code = "trap '' HUP; while :; do echo tick; sleep 0.1; done & echo started"
    agent = registry.create({"name": "chatty", "command": ["sh", "-c", code], "stop_grace_s": 1.0})
    assert agent.wait(20), "the run ended"
    assert agent.state == "exited" and agent.exit_code == 0
    assert history(registry, "chatty", "complete")[-1].data["ended"] >= 1
    assert lines(registry, "chatty").count("tick") >= 10, "its output was read meanwhile"


def test_missing_executable_and_bad_cwd_are_rejected(registry: Registry) -> None:
    """A program not on PATH and a working directory that does not exist are refused up front."""
    with pytest.raises(ExecutableNotFound, match="no-such-program"):
        registry.create({"name": "ghost", "command": ["no-such-program-xyz"]})
    with pytest.raises(InvalidCwd):
        registry.create({"name": "ghost", "command": ["true"], "cwd": "/no/such/dir"})
    assert "ghost" not in registry


def test_exec_failure_becomes_failed_state(registry: Registry, tmp_path: Path) -> None:
    """A file that is executable but cannot be exec'd gives state failed and an error event."""
    script = tmp_path / "not-a-program"
    script.write_bytes(b"\x7fELF garbage")
    script.chmod(0o755)
    agent = registry.create({"name": "broken", "command": [str(script)]})
    assert agent.state == "failed"
    assert history(registry, "broken", "error")[0].data["code"] == "spawn_failed"
    assert history(registry, "broken", "complete")


@pytest.mark.parametrize("body, error", [
    ({"name": "../etc", "command": ["true"]}, InvalidName),
    ({"name": "a" * 65, "command": ["true"]}, InvalidName),
    ({"name": "", "command": ["true"]}, InvalidName),
    ({"name": "ok", "command": []}, InvalidRequest),
    ({"name": "ok"}, InvalidRequest),
    ({"name": "ok", "profile": "nope"}, UnknownProfile),
    ({"name": "ok", "command": ["true"], "extractors": [{"name": "x", "pattern": "(a"}]}, InvalidRequest),
    ({"name": "ok", "command": ["true"], "colour": "red"}, InvalidRequest),
])
def test_bad_definitions_raise_specific_errors(registry: Registry, body: dict[str, Any], error: type) -> None:
    """Each kind of bad agent definition raises its own exception with a usable message."""
    with pytest.raises(error) as info:
        registry.create(body)
    assert str(info.value)


def test_input_to_cat_comes_back_and_echo_is_marked(registry: Registry) -> None:
    """Input written to cat comes back; the terminal's echo of it is marked as echo."""
    agent = registry.create({"name": "cat", "command": ["cat"]})
    agent.write("hello there\n")
    def both() -> list[dict[str, Any]]:
        found = [e.data for e in history(registry, "cat", "log") if e.data["line"] == "hello there"]
        return found if len(found) >= 2 else []

    logs = gwait(both, 5, "the echo and cat's copy")
    assert logs[0].get("echo") == len("hello there") and "echo" not in logs[1]
    registry.stop("cat", wait=True)
    with pytest.raises(AgentNotRunning):
        agent.write("more\n")


def test_terminal_queries_are_answered(registry: Registry) -> None:
    """A program that asks for the cursor position (ESC[6n) gets an answer, as from xterm."""
    code = r"""
import os, sys, termios, tty
fd = sys.stdin.fileno()
tty.setraw(fd)
os.write(1, b"\x1b[6n")
reply = b""
while not reply.endswith(b"R"):
    reply += os.read(fd, 1)
termios.tcsetattr(fd, termios.TCSANOW, termios.tcgetattr(fd))
os.write(1, b"\r\ngot " + reply[1:] + b"\r\n")
"""
    run_to_end(registry, name="asker", command=[PY, "-c", code])
    assert any(line.startswith("got [") and line.endswith("R") for line in lines(registry, "asker"))


def test_resize_reaches_the_program(registry: Registry) -> None:
    """resize() changes the terminal size the program sees."""
    agent = registry.create({"name": "sizer", "command": ["sh", "-c", "stty size; read x; stty size"], "cols": 100, "rows": 30})
    gwait(lambda: "30 100" in lines(registry, "sizer"), 5)
    agent.resize(132, 43)
    agent.write("\n")
    assert agent.wait(5)
    assert lines(registry, "sizer")[-1] == "43 132"


@pytest.mark.slow
def test_output_before_exit_is_not_lost(registry: Registry) -> None:
    """Everything printed right before the program exits arrives (drained before EIO)."""
    run_to_end(registry, name="burst", command=[PY, "-c", "import sys\nfor i in range(20000): print(f'line {i}')"])
    got = lines(registry, "burst")
    assert got == [f"line {i}" for i in range(20000)]
    nums = [e.data["line_num"] for e in history(registry, "burst", "log")]
    assert nums == list(range(1, 20001))


def test_extractions_from_named_groups_and_defaults(registry: Registry) -> None:
    """Extractors yield the value group, else group 1, else the whole match, with named groups."""
    extractors = [
        {"name": "pct", "pattern": r"(?P<value>\d+)% of (?P<what>\w+)"},
        {"name": "first", "pattern": r"took (\d+)ms"},
        {"name": "whole", "pattern": r"DONE"},
    ]
    run_to_end(registry, name="ex", command=["printf", "%s\\n", "50% of build", "took 12ms", "all DONE"], extractors=extractors)
    found = {e.data["name"]: e.data for e in history(registry, "ex", "extraction")}
    assert found["pct"]["value"] == "50" and found["pct"]["groups"] == {"value": "50", "what": "build"}
    assert found["pct"]["line_num"] == 1
    assert found["first"]["value"] == "12"
    assert found["whole"]["value"] == "DONE"


def test_pathological_regex_does_not_stall(registry: Registry) -> None:
    """(a+)+$ against a long line of a's returns promptly (linear-time engine)."""
    started = time.monotonic()
    run_to_end(registry, name="redos", command=[PY, "-c", "print('a' * 60000 + 'b')"],
               extractors=[{"name": "evil", "pattern": "(a+)+$"}])
    assert time.monotonic() - started < 5
    assert not history(registry, "redos", "extraction")


def test_restart_policy_on_failure_with_backoff(registry: Registry) -> None:
    """on-failure restarts a failing agent up to max_restarts, each run numbering lines from 1."""
    agent = run_to_end(registry, name="flaky", command=["sh", "-c", "echo try; exit 1"],
                       restart={"mode": "on-failure", "max_restarts": 2, "backoff_s": 0.05})
    assert agent.run == 3
    states = [(e.data["state"], e.data["run"]) for e in history(registry, "flaky", "state")]
    assert states == [("starting", 1), ("running", 1), ("exited", 1), ("backoff", 1),
                      ("starting", 2), ("running", 2), ("exited", 2), ("backoff", 2),
                      ("starting", 3), ("running", 3), ("exited", 3)]
    logs = history(registry, "flaky", "log")
    assert [(e.data["run"], e.data["line_num"]) for e in logs] == [(1, 1), (2, 1), (3, 1)]
    assert len(history(registry, "flaky", "complete")) == 1


def test_a_raising_listener_breaks_nothing(registry: Registry) -> None:
    """A receiver that raises is skipped; the pipeline and other receivers go on."""
    seen: list[int] = []

    def bad(sender: str, event: Event) -> None:
        raise RuntimeError("boom")

    def good(sender: str, event: Event) -> None:
        seen.append(event.id)

    with registry.eventlog.subscribe(bad, types=[events.LOG]), registry.eventlog.subscribe(good, types=[events.LOG]):
        run_to_end(registry, name="robust", command=["printf", "a\\nb\\n"])
    assert lines(registry, "robust") == ["a", "b"] and len(seen) == 2


@pytest.mark.slow
def test_many_agents_leave_no_zombies_or_fds(registry: Registry) -> None:
    """200 agents run one after another leave no zombie and no growth in open fds."""
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))
    run_to_end(registry, name="warmup", command=["true"])
    before = fds()
    for i in range(200):
        run_to_end(registry, name=f"seq-{i}", command=["echo", str(i)])
    assert fds() <= before + 2, "file descriptors leaked"
    assert not zombie_children()


def test_erased_spinner_partial_is_taken_back(registry: Registry) -> None:
    """A spinner shown as a partial line and erased before exit is retracted with an empty partial."""
    code = (
        "import signal, sys\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
        "sys.stdout.write('working |'); sys.stdout.flush()\nsignal.sigwait({signal.SIGUSR1})\n"
        "sys.stdout.write('\\r\\x1b[K'); sys.stdout.flush()"
    )
    agent = registry.create({"name": "spinner", "command": [PY, "-c", code]})
    gwait(lambda: [e for e in history(registry, "spinner", "log") if e.data.get("partial")], 5, "the spinner shown")
    assert agent.pid is not None
    os.kill(agent.pid, signal.SIGUSR1)  # now erase it and exit
    assert agent.wait(10)
    logs = [e.data for e in history(registry, "spinner", "log")]
    assert logs[0]["partial"] and logs[0]["line"] == "working |"
    assert logs[-1] == {"line": "", "line_num": logs[0]["line_num"], "stream": "stdout", "run": 1, "partial": True}
    assert not [d for d in logs if not d.get("partial")]


def test_value_on_the_next_line(registry: Registry) -> None:
    """A match without a value takes the next non-empty line (codex's two-line token count)."""
    run_to_end(registry, name="codexish", profile="codex", args=[],
               command=["printf", "%s\\n", "tokens used", "", "73,347", "tokens used: 12"])
    found = [e.data for e in history(registry, "codexish", "extraction") if e.data["name"] == "codex.tokens"]
    assert [(d["value"], d["line_num"], d.get("value_line")) for d in found] == [("73,347", 1, 3), ("12", 4, None)]


def test_restart_with_a_grace_of_zero_kills_at_once(registry: Registry) -> None:
    """An agent whose stop_grace_s is 0 is SIGKILLed at once on restart: 0 is a grace, not
    "use the default" (the config's 2 s here)."""
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)"
    agent = registry.create({"name": "stubborn", "command": [PY, "-c", code], "stop_grace_s": 0})
    gwait(lambda: "up" in lines(registry, "stubborn"), 10, "the first run")
    assert agent.grace_s() == 0 and agent.grace_s(1.5) == 1.5
    started = time.monotonic()
    registry.restart("stubborn", wait=True)
    assert time.monotonic() - started < 1.5, "restart waited for a grace period it does not have"
    exited = [e.data for e in history(registry, "stubborn", "state") if e.data["state"] == "exited"]
    assert exited[0]["signal"] == "SIGKILL" and agent.run == 2
    registry.stop("stubborn", wait=True)
