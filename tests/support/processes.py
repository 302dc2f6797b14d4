"""Processes the tests start and watch: a real server, tiny agents, and the process tree.

:class:`Server` is a real ``agent-supervisor serve`` in a subprocess on a loopback port of its
own; the ``server`` fixture shares one per test module (tests there use agent names of their
own), ``make_server`` makes fresh ones.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ROOT
from .net import Headers, Response, http
from .sse import SSEStream
from .waiting import wait_for


@dataclass
class Server:
    """A real ``agent-supervisor serve`` in a subprocess, on a loopback port of its own."""

    data_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str | None = None

    def start(self, timeout: float = 20.0) -> Server:
        cmd = [sys.executable, "-m", "supervisor", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.log_path = self.data_dir.parent / f"server-{self.data_dir.name}.log"
        self._log = open(self.log_path, "ab")
        # Unbuffered: a readline must not swallow the lines after it, or select() would not
        # see them (the banner after "serving on" is read by some tests).
        self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, env=env, bufsize=0)
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                line = self.process.stdout.readline()
                if b"serving on" in line or not line:
                    break
            if self.process.poll() is not None:
                break
        if b"serving on" not in line:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log_path.read_text()[-3000:]}")
        self.url = line.decode().split("serving on", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        if self.token is None and "--no-token" not in self.args:
            # A generated token: the runtime file has it (the user's own way to find it).
            self.token = json.loads((self.data_dir / "server.json").read_text())["token"]
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        code = self.process.returncode
        if self.process.stdout:
            self.process.stdout.close()
        self._log.close()
        self.process = None
        return code

    def auth(self, headers: Headers = None) -> dict[str, str | None]:
        """``headers`` plus the token, unless they carry an Authorization of their own (a
        header given as None is not sent)."""
        h = dict(headers or {})
        if self.token:
            h.setdefault("Authorization", f"Bearer {self.token}")
        return h

    @property
    def dashboard(self) -> str:
        """The address a person opens: the dashboard with ``?token=`` (as ``serve`` prints it)."""
        return f"{self.url}/?token={self.token}" if self.token else f"{self.url}/"

    def request(self, method: str, path: str, body: Any = None, headers: Headers = None, **kw: Any) -> Response:
        return http(self.url, method, path, body, self.auth(headers), **kw)

    def get(self, path: str, **kw: Any) -> Any:
        response = self.request("GET", path, **kw)
        assert response.status == 200, (response.status, response.body[:500])
        return response.json()

    def create(self, **agent: Any) -> dict[str, Any]:
        response = self.request("POST", "/api/agents", agent)
        assert response.status == 201, (response.status, response.body[:500])
        return response.json()  # type: ignore[no-any-return]

    def stream(self, path: str, headers: Headers = None, **kw: Any) -> SSEStream:
        return SSEStream(self.url, path, self.auth(headers), **kw)

    def wait_state(self, name: str, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        """The agent's JSON once its state is one of ``states``."""
        def reached() -> dict[str, Any] | None:
            agent: dict[str, Any] = self.get(f"/api/agents/{name}")
            return agent if agent["state"] in states else None

        found = wait_for(reached, timeout, 0.02, f"agent {name} in {states}")
        assert found is not None
        return found


def python_agent(code: str) -> list[str]:
    """An argv that runs ``code`` in a fresh, unbuffered Python."""
    return [sys.executable, "-u", "-c", code]


def children(pid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command) of every process whose parent is ``pid``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command is in parentheses and may contain spaces: split after the last ')'.
        command = stat[stat.index("(") + 1: stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == pid:
            found.append((int(entry), state, command))
    return found


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def zombie_children() -> list[int]:
    """Children of this process that died and were not reaped."""
    return [pid for pid, state, _ in children(os.getpid()) if state == "Z"]
