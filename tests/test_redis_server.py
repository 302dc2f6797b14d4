"""tests/support/redis_server: the real redis-server the Redis tests run against.

The fixture is infrastructure for the fault tests of issue 16 ("Redis restarted empty", "Redis
stopped for 5 s"), so its own behaviour is checked here: a process of its own, reachable on its
unix socket and its TCP port, nothing persisted unless asked, stopped by pid.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from supervisor.redis.connection import connect

from support.redis_server import RedisServer, require


def test_the_server_answers_on_its_socket_and_port(redis_server: Any) -> None:
    """Both addresses serve the same server, with persistence off."""
    for url in (redis_server.url, redis_server.tcp_url):
        client = connect(url)
        client.set("k", url)
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.info("server")["process_id"] == redis_server.pid
        client.close()


def test_restart_is_empty_unless_the_data_is_kept(redis_server: Any) -> None:
    """``restart()`` comes back empty; ``restart(keep_data=True)`` comes back with the data."""
    redis_server.command(b"SET k v")
    redis_server.restart(keep_data=True)
    assert redis_server.command(b"GET k") == b"$1"
    redis_server.restart()
    assert redis_server.command(b"GET k") == b"$-1"


def test_a_killed_server_comes_back_with_its_last_snapshot(redis_server: Any) -> None:
    """``kill()`` loses what came after the last ``snapshot()``, as a crash does."""
    redis_server.command(b"SET before 1")
    redis_server.snapshot()
    redis_server.command(b"SET after 1")
    redis_server.kill()
    redis_server.start()
    assert redis_server.command(b"EXISTS before") == b":1"
    assert redis_server.command(b"EXISTS after") == b":0"


def test_a_paused_server_accepts_but_does_not_answer(redis_server: Any) -> None:
    """SIGSTOP: no reply within the timeout; SIGCONT: it answers again."""
    redis_server.pause()
    try:
        assert redis_server.ping(timeout=0.3) is False
    finally:
        redis_server.resume()
    assert redis_server.ping() is True


def test_stop_ends_the_process_by_pid(tmp_path: Path) -> None:
    """``close()`` ends the very process it started, even a paused one, and removes its socket."""
    require()
    server = RedisServer(tmp_path / "r").start()
    pid = server.pid
    server.pause()
    server.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not server.socket_path.exists()
