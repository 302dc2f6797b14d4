"""Fixtures shared by every test: an in-process registry and app, real servers, and leak checks.

Every test has a timeout (setup.cfg), and an autouse check fails a test that leaves child
processes behind (running or zombie): the blinker-style leak test applied to processes. Under
pytest-xdist each worker is a process of its own and checks its own children; servers listen
on port 0, so workers never meet.

``server`` is one real server per test module: starting one costs a few hundred milliseconds,
and the tests of a module use agent names of their own. A test that needs a server to itself
(counts every agent or client, changes settings, kills it) takes ``make_server``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from supervisor.config import Config
from supervisor.registry import Registry

from support.processes import Server, children
from support.waiting import wait_for

# Fixtures of their own modules: the browser (Chromium, pages, proxies) and the pinned codex.
pytest_plugins = ["support.browser", "support.codex"]

# pytest-xdist gives its workers COLUMNS and LINES (the size of the terminal pytest runs in);
# a program a test starts (in tmux, under a PTY) would take them for its own terminal's size.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """Fail the test if it leaves children of this process behind, running or zombie."""
    before = {pid for pid, _, _ in children(os.getpid())}
    yield

    def settled() -> bool:
        return not [c for c in children(os.getpid()) if c[0] not in before]

    try:
        wait_for(settled, timeout=5.0, what="child processes to end")
    except AssertionError:
        leaked = [c for c in children(os.getpid()) if c[0] not in before]
        pytest.fail(f"test left child processes behind: {leaked}")


def _config(home: Path, **overrides: Any) -> Config:
    from supervisor.config import load_config

    return load_config(environ={"HOME": str(home)}, data_dir=str(home / "data"), **overrides)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A configuration on a fresh data directory, with quick timings for tests."""
    return _config(tmp_path, stop_grace_s=2.0)


@pytest.fixture
def registry(config: Config) -> Iterator[Registry]:
    """An in-process registry (the core without HTTP), shut down after the test."""
    reg = Registry(config)
    try:
        yield reg
    finally:
        reg.shutdown(grace=1.0)


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    """The Flask app in this process (no server, no stream), closed after the test."""
    from api import close_app, create_app

    application = create_app(config)
    try:
        yield application
    finally:
        close_app(application, grace=1.0)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client of :func:`app`: requests without a socket."""
    return app.test_client()


@contextmanager
def _servers(base: Path) -> Iterator[Callable[..., Server]]:
    """``make(...)`` starts a server under ``base``; every one made is stopped at the end."""
    servers: list[Server] = []

    def make(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None,
             token: str | None = None, port: int = 0) -> Server:
        directory = data_dir or base / f"data{len(servers)}"
        extra = list(args) + (["--token", token] if token else [])
        server = Server(directory, extra, {"HOME": str(base), **(env or {})}, port=port, token=token)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start real servers of this test's own (``agent-supervisor serve`` subprocesses on free
    loopback ports), stopped after it."""
    with _servers(tmp_path) as make:
        yield make


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server of this test module, with default settings (agent names must be unique
    within the module)."""
    with _servers(tmp_path_factory.mktemp("server")) as make:
        yield make()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Any]:
    """A real redis-server of this test's own (unix socket and a loopback port, nothing
    persisted), stopped by pid afterwards. Skipped with the reason where redis-server or the
    redis extra is missing, and a failure under ``CI=true``."""
    from support.redis_server import RedisServer, require

    require()
    server = RedisServer(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.close()


#: What ``make_log`` makes: ``make(data_dir=None, history_size=10_000, cluster="as")``; logs of
#: one ``cluster`` are nodes of one cluster with Redis (they share events), strangers embedded.
MakeLog = Callable[..., Any]


@pytest.fixture(params=["embedded", "redis"])
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLog]:
    """Event logs of one backend, for the contract tests that every backend must pass: the
    embedded one (history files, or memory with ``data_dir`` None) and the Redis one (a real
    redis-server of the test's own; ``data_dir`` holds the node's id mark). With Redis,
    ``history_size`` is the retention of a channel's stream and of the node's copy of it, and
    streams trim exactly (``stream-node-max-entries 1``), as the embedded memory does.
    Every log made is closed after the test."""
    made: list[Any] = []
    if request.param == "embedded":
        from supervisor.eventlog import EventLog

        def make(data_dir: Path | None = None, history_size: int = 10_000, cluster: str = "as") -> Any:
            made.append(EventLog(data_dir, history_size))
            return made[-1]

        yield make
    else:
        from supervisor.redis.append import Retention
        from supervisor.redis.backend import RedisEventLog

        server = request.getfixturevalue("redis_server")
        assert server.command(b"CONFIG SET stream-node-max-entries 1") == b"+OK"

        def make(data_dir: Path | None = None, history_size: int = 10_000, cluster: str = "as") -> Any:
            log = RedisEventLog(server.url, f"node{len(made)}", data_dir=data_dir, prefix=cluster,
                                retention=Retention(100_000, history_size), copy_per_channel=history_size)
            made.append(log)
            return log

        yield make
    for log in made:
        log.close()
