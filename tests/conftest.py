"""Fixtures shared by every test: an in-process registry, a real server, and leak checks.

Every test has a timeout (setup.cfg), and an autouse check fails a test that leaves child
processes behind (running or zombie), the blinker-style leak test applied to processes.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers import Server, wait_for


def _children(pid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command) of every process whose parent is ``pid``."""
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


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """Fail the test if it leaves children of this process behind, running or zombie."""
    before = {pid for pid, _, _ in _children(os.getpid())}
    yield
    def settled() -> bool:
        return not [c for c in _children(os.getpid()) if c[0] not in before]
    try:
        wait_for(settled, timeout=5.0, what="child processes to end")
    except AssertionError:
        leaked = [c for c in _children(os.getpid()) if c[0] not in before]
        pytest.fail(f"test left child processes behind: {leaked}")


@pytest.fixture
def config(tmp_path: Path) -> Any:
    """A configuration on a fresh data directory, with quick timings for tests."""
    from supervisor.config import load_config

    return load_config(environ={"HOME": str(tmp_path)}, data_dir=str(tmp_path / "data"), stop_grace_s=2.0)


@pytest.fixture
def registry(config: Any) -> Iterator[Any]:
    """An in-process registry (the core without HTTP), shut down after the test."""
    from supervisor.registry import Registry

    reg = Registry(config)
    try:
        yield reg
    finally:
        reg.shutdown(grace=1.0)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start real servers (``agent-supervisor serve`` subprocesses on free loopback ports)."""
    servers: list[Server] = []

    def make(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None,
             token: str | None = None, port: int = 0) -> Server:
        directory = data_dir or tmp_path / f"data{len(servers)}"
        extra = list(args) + (["--token", token] if token else [])
        server = Server(directory, extra, {"HOME": str(tmp_path), **(env or {})}, port=port, token=token)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    """One real server with default settings."""
    return make_server()
