"""The command line as a person runs it: a subprocess with its output piped, or one followed live."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from . import ROOT
from .processes import Server, alive, descendants
from .waiting import wait_for

CLI_TIMEOUT = 40.0


def cli_env(server: Server | None = None, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this one without AGENT_SUPERVISOR_*, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SUPERVISOR_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("NO_COLOR", None)
    if server is not None:
        env["AGENT_SUPERVISOR_URL"] = server.url
        if server.token:
            env["AGENT_SUPERVISOR_TOKEN"] = server.token
    env.update(extra)
    return env


def cli(*args: str, server: Server | None = None, env: dict[str, str] | None = None,
        timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m supervisor ARGS`` to its end, output captured (piped, not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args], check=False, cwd=ROOT, capture_output=True, text=True,
        env=env if env is not None else cli_env(server), timeout=timeout, stdin=subprocess.DEVNULL,
    )


def cli_here(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str,
             url: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI's ``main`` in this process (for what needs no subprocess: parsing, help, a
    server that is not there), against ``url``; the result looks like :func:`cli`'s."""
    from supervisor.cli import main

    for key in [k for k in os.environ if k.startswith("AGENT_SUPERVISOR_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AGENT_SUPERVISOR_URL", url)
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["agent-supervisor", *args], code, out, err)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert the command failed with exactly one line on stderr and no traceback; return it."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


class LiveCli:
    """A CLI subprocess whose output is collected line by line while it runs."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", *args], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_out(self, predicate: Callable[[list[str]], bool], timeout: float = 20.0,
                 what: str = "") -> None:
        wait_for(lambda: predicate(list(self.out)), timeout, 0.01,
                 what or "CLI output") if self.proc.poll() is None else None
        assert predicate(list(self.out)), (what, self.out[-5:], self.err[-5:])

    def finish(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def stop_and_check_all_gone(server: Server, name: str) -> None:
    """``agent-supervisor stop`` ends the agent and every process below it."""
    agent = server.get(f"/api/agents/{name}")
    assert agent["state"] == "running", agent  # still going: the stop is what ends it
    family = {agent["pid"], *descendants(agent["pid"])}
    result = cli("stop", name, "--grace", "3", server=server)
    assert result.returncode == 0, result.stderr
    assert server.get(f"/api/agents/{name}")["state"] == "exited"
    wait_for(lambda: not any(alive(pid) for pid in family), 10, 0.05,
             f"every process of {name} to end: {sorted(family)}")
