"""Tests for supervisor.inputwait and the agent's waiting-for-input flag: real programs under a
PTY in-process (with a short ``input_wait_s``), and the events on a real server's streams."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.config import load_config
from supervisor.inputwait import InputWait
from supervisor.registry import Registry

from support.agents import history
from support.processes import Server, python_agent
from support.waiting import gwait

ASK = ("import sys\nprint('working')\nsys.stdout.write('Continue? [y/N] '); sys.stdout.flush()\n"
       "answer = sys.stdin.readline().strip()\nprint('got', answer)\n")


def test_the_flag_follows_quiet_time_begin_and_clear() -> None:
    """Quiet time counts from the last output; a wait ends once, by output or by clear()."""
    wait = InputWait(2.0)
    assert wait.output(10.0) is False and wait.due_in(11.0) == pytest.approx(1.0)
    assert wait.due_in(12.5) < 0
    wait.begin("Continue? ")
    assert (wait.waiting, wait.prompt) == (True, "Continue? ")
    assert wait.output(13.0) is True and not wait.waiting and wait.prompt is None
    assert wait.clear() is False


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[Registry]:
    config = load_config(environ={"HOME": str(tmp_path)}, data_dir=str(tmp_path / "data"), input_wait_s=0.4,
                         partial_line_s=0.1, stop_grace_s=1.0)
    registry = Registry(config)
    yield registry
    registry.shutdown(grace=1.0)


def waits(registry: Registry, name: str) -> list[dict[str, object]]:
    return [e.data for e in history(registry, name, "waiting_input")]


def test_a_prompt_with_no_output_waits_and_input_clears_it(quick: Registry) -> None:
    """``Continue? [y/N] `` then silence: flagged with the prompt (its partial line shown first);
    typing the answer clears it, with the reason."""
    agent = quick.create({"name": "ask", "command": python_agent(ASK)})
    gwait(lambda: agent.input_wait.waiting, 10, "the prompt to count as waiting")
    assert agent.record().prompt == "Continue? [y/N] "
    logs = history(quick, "ask", "log")
    flagged = history(quick, "ask", "waiting_input")[0]
    assert any(e.data.get("partial") and e.data["line"] == "Continue? [y/N] " and e.id < flagged.id for e in logs)
    assert flagged.data == {"waiting_input": True, "prompt": "Continue? [y/N] ", "line_num": 2, "run": 1,
                            "quiet_s": 0.4}
    agent.write("y\r")
    assert not agent.input_wait.waiting
    assert agent.wait(10)
    assert [d["waiting_input"] for d in waits(quick, "ask")] == [True, False]
    assert waits(quick, "ask")[1]["reason"] == "input"


@pytest.mark.slow
def test_output_clears_the_flag_and_whole_lines_never_set_it(quick: Registry) -> None:
    """A pause after ``Working...`` looks like a prompt until output resumes (reason output);
    a program that prints whole lines and pauses is never waiting; the end of a run clears."""
    code = ("import sys, time\nsys.stdout.write('Working...'); sys.stdout.flush()\ntime.sleep(1.2)\n"
            "print(' done')\nprint('idle now')\ntime.sleep(1.2)\nsys.stdout.write('last> '); sys.stdout.flush()\n"
            "time.sleep(60)\n")
    agent = quick.create({"name": "pause", "command": python_agent(code)})
    gwait(lambda: len(waits(quick, "pause")) == 3, 15, "waiting, cleared by output, waiting again")
    first, cleared, again = waits(quick, "pause")
    assert first["prompt"] == "Working..." and cleared == {"waiting_input": False, "reason": "output", "run": 1}
    assert again["prompt"] == "last> ", "the whole lines in between never counted as waiting"
    quick.stop("pause", wait=True)
    gwait(lambda: not agent.active, 10)
    assert waits(quick, "pause")[-1] == {"waiting_input": False, "reason": "exit", "run": 1}


@pytest.mark.slow
def test_streams_and_the_agent_json_carry_it(make_server: Callable[..., Server]) -> None:
    """The events reach the agent's stream and /api/stream; GET shows waiting_input and prompt."""
    server = make_server(env={"AGENT_SUPERVISOR_INPUT_WAIT_S": "0.5"})
    with server.stream("/api/stream") as everything:
        server.create(name="sw", command=python_agent(ASK))
        seen = everything.until(lambda e: e.event == "waiting_input", timeout=15)
    event = json.loads(seen[-1].data)
    assert event["agent_name"] == "sw" and event["data"]["waiting_input"] is True
    agent = server.get("/api/agents/sw")
    assert agent["waiting_input"] is True and agent["prompt"] == "Continue? [y/N] "
    with server.stream("/api/agents/sw/stream") as own:
        own.until(lambda e: e.event == "waiting_input", timeout=10)  # replayed from history
        assert server.request("POST", "/api/agents/sw/input", {"data": "n\r"}).status == 204
        cleared = own.until(lambda e: e.event == "waiting_input" and '"waiting_input":false' in e.data, timeout=10)
    assert json.loads(cleared[-1].data)["data"]["reason"] == "input"
    assert server.get("/api/agents/sw")["waiting_input"] is False
