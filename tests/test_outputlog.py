"""Tests for supervisor.outputlog (rotation by size) and its download,
``GET /api/agents/<name>/output.log`` (api/output.py), against real files and a real server."""
from __future__ import annotations

import hashlib
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.health import StorageHealth
from supervisor.outputlog import OutputLog, kept_files, rotate

from support.processes import Server, python_agent
from support.waiting import wait_for


def contents(path: Path) -> list[bytes]:
    return [p.read_bytes() for p in kept_files(path)]


def writer(path: Path, max_bytes: int, backups: int, health: StorageHealth | None = None) -> OutputLog:
    return OutputLog(path, "agent", health if health is not None else StorageHealth(), max_bytes, backups)


def test_rotation_keeps_at_most_backups_plus_one_files_of_max_bytes(tmp_path: Path) -> None:
    """Before a write would pass max_bytes the file becomes .1 (.1 becomes .2 ...); the oldest
    past ``backups`` goes. No write is split; everything kept is the newest bytes, in order."""
    path = tmp_path / "output.log"
    health = StorageHealth()
    output = writer(path, max_bytes=100, backups=2, health=health)
    chunks = [bytes([65 + i % 26]) * 30 for i in range(20)]  # 600 bytes in 30-byte writes
    for chunk in chunks:
        output.write(chunk)
    output.close()
    kept = kept_files(path)
    assert [p.name for p in kept] == ["output.log.2", "output.log.1", "output.log"]
    assert all(p.stat().st_size <= 100 for p in kept)
    data = b"".join(contents(path))
    assert data == b"".join(chunks)[-len(data):] and len(data) >= 200, "the newest bytes, in order, whole writes"
    assert health.errors["output"] == 0 and health.output_bytes_lost == 0 and not health.degraded


def test_no_backups_starts_again_and_zero_never_rotates(tmp_path: Path) -> None:
    """backups = 0: a full output.log starts again empty; max_bytes = 0: it just grows."""
    empty = writer(tmp_path / "a.log", max_bytes=10, backups=0)
    for _ in range(5):
        empty.write(b"123456")
    empty.close()
    assert [p.name for p in kept_files(tmp_path / "a.log")] == ["a.log"]
    assert (tmp_path / "a.log").read_bytes() == b"123456"
    grows = writer(tmp_path / "b.log", max_bytes=0, backups=3)
    for _ in range(100):
        grows.write(b"x" * 100)
    grows.close()
    assert (tmp_path / "b.log").stat().st_size == 10_000 and len(kept_files(tmp_path / "b.log")) == 1


def test_a_new_run_appends_and_fewer_backups_drop_the_rest(tmp_path: Path) -> None:
    """A writer opened on an existing file continues it (its size counts); a lower ``backups``
    deletes the extra files at the next rotation."""
    path = tmp_path / "output.log"
    first = writer(path, max_bytes=50, backups=4)
    for _ in range(10):
        first.write(b"a" * 20)
    first.close()
    assert len(kept_files(path)) == 5
    second = writer(path, max_bytes=50, backups=1)
    second.write(b"b" * 40)
    assert second.size == 40 and path.read_bytes() == b"b" * 40
    second.close()
    assert [p.name for p in kept_files(path)] == ["output.log.1", "output.log"]
    rotate(path, 0)  # no backups: nothing is kept past a rotation
    assert kept_files(path) == []


def test_a_failed_write_is_reported_not_raised(tmp_path: Path) -> None:
    """A directory that cannot take the file: the writer reports one episode to the storage
    health, counts the failed write and the bytes it dropped, and raises nothing."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    health = StorageHealth()
    output = writer(blocker / "output.log", max_bytes=10, backups=1, health=health)
    output.write(b"lost")
    output.write(b"also")  # within the retry pause: dropped, counted, no new error
    output.close()
    assert health.errors["output"] == 1 and health.output_bytes_lost == 8
    assert health.degraded and health.episodes_total == 1
    health.close()


def test_a_rotation_that_fails_drops_and_counts_then_resumes(tmp_path: Path) -> None:
    """A directory where output.log.1 should go: the rotation fails, so the write that needed it
    is dropped and counted (the file never grows past its bound), the health is degraded; once
    the obstacle is gone the next write rotates and the episode ends."""
    path = tmp_path / "output.log"
    health = StorageHealth()
    output = writer(path, max_bytes=100, backups=1, health=health)
    output.write(b"a" * 80)
    (tmp_path / "output.log.1").mkdir()
    (tmp_path / "output.log.1" / "in-the-way").write_text("x")
    output.write(b"b" * 40)
    assert health.degraded and health.errors["output"] == 1 and health.output_bytes_lost == 40
    assert path.read_bytes() == b"a" * 80
    shutil.rmtree(tmp_path / "output.log.1")
    def written() -> bool:
        output.write(b"c" * 40)  # dropped until the retry pause is over, then rotates
        return not health.degraded

    wait_for(written, 5, what="the rotation to work again")
    output.close()
    assert (tmp_path / "output.log.1").read_bytes() == b"a" * 80 and path.read_bytes().startswith(b"c" * 40)
    health.close()


# ------------------------------------------------------------------------------- the download

FLOOD = python_agent("import sys\nfor i in range(4000): sys.stdout.write(f'line {i:05d} ' + 'x' * 40 + '\\n')\n")


@pytest.mark.slow
def test_download_is_every_kept_byte_oldest_first(make_server: Callable[..., Server]) -> None:
    """The download is the rotated files then output.log, byte for byte, as an attachment; each
    file is at most output_log_max_bytes."""
    server = make_server(env={"AGENT_SUPERVISOR_OUTPUT_LOG_MAX_BYTES": "65536",
                              "AGENT_SUPERVISOR_OUTPUT_LOG_BACKUPS": "2"})
    server.create(name="flood", command=FLOOD)
    server.wait_state("flood", "exited")
    directory = server.data_dir / "agents" / "flood"
    files = kept_files(directory / "output.log")
    assert [p.name for p in files] == ["output.log.2", "output.log.1", "output.log"]
    assert all(p.stat().st_size <= 65536 for p in files)
    expected = b"".join(p.read_bytes() for p in files)
    response = server.request("GET", "/api/agents/flood/output.log")
    assert response.status == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == 'attachment; filename="flood-output.log"'
    assert int(response.headers["content-length"]) == len(expected)
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(expected).digest()
    assert b"line 03999 " in response.body and b"\r\n" in response.body, "raw PTY bytes"
    assert server.request("GET", "/api/agents/flood/output.log", headers={"Authorization": None}).status == 401


def test_no_log_and_no_agent_are_404_json(server: Server) -> None:
    """An agent that never ran has no output.log; an unknown agent is unknown: both 404 JSON."""
    assert server.request("POST", "/api/agents", {"name": "idle", "command": ["true"]}).status == 201
    server.wait_state("idle", "exited")
    gone = server.request("GET", "/api/agents/nobody/output.log")
    assert gone.status == 404 and gone.json()["error"]["code"] == "agent_not_found"
    # Remove the file to stand for "never ran"; the route must not fail on a missing file.
    for path in kept_files(server.data_dir / "agents" / "idle" / "output.log"):
        path.unlink()
    missing = server.request("GET", "/api/agents/idle/output.log")
    assert missing.status == 404 and missing.json()["error"]["code"] == "no_output_log"


@pytest.mark.slow
def test_a_stalled_download_holds_nobody_else(make_server: Callable[..., Server]) -> None:
    """A client that stops reading a large download keeps its piece, not the server: other
    requests are answered meanwhile, and the download then completes whole."""
    server = make_server(env={"AGENT_SUPERVISOR_OUTPUT_LOG_MAX_BYTES": "0"})
    big = python_agent("import sys\nblock = ('y' * 1023 + '\\n') * 1024\nfor _ in range(24): sys.stdout.write(block)\n")
    server.create(name="big", command=big)
    server.wait_state("big", "exited", timeout=60)
    size = (server.data_dir / "agents" / "big" / "output.log").stat().st_size
    assert size > 24 << 20
    host, port = server.url.split("://", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    try:
        sock.sendall(f"GET /api/agents/big/output.log HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Bearer {server.token}\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        # The client reads nothing more now: 24 MiB is more than the sockets buffer, so the
        # download waits on its socket, in its own greenlet.
        started = time.monotonic()
        for _ in range(5):
            assert server.request("GET", "/healthz").status == 200
        assert time.monotonic() - started < 5, "other requests went on while the download stalled"
        received = len(head.split(b"\r\n\r\n", 1)[1])
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
        assert received == size
    finally:
        sock.close()


# ------------------------------------------------------------------- a rotation that fails, live

WAITER = python_agent(
    "import sys\n"
    "for i in range(100): sys.stdout.write(f'line {i:03d} ' + 'x' * 40 + '\\n')\n"
    "sys.stdout.flush()\n"
    "input()\n"
    "print('still here', flush=True)\n"
    "import time; time.sleep(60)\n"
)


@pytest.mark.slow
def test_a_failed_rotation_is_reported_everywhere_and_the_agent_goes_on(make_server: Callable[..., Server]) -> None:
    """output.log cannot be rotated (a directory stands where output.log.1 goes): /healthz says
    degraded and names the file, /metrics counts the failed write, the dropped bytes and the
    episode (parsed by prometheus_client), and the agent keeps running, printing and streaming.
    With the obstacle gone, writing resumes by itself and the episode ends."""
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[str, float]:
        response = server.request("GET", "/metrics")
        assert response.status == 200
        return {sample.name + "".join(f"{{{v}}}" for v in sample.labels.values()): float(sample.value)
                for family in text_string_to_metric_families(response.body.decode())
                for sample in family.samples if sample.name.startswith("agent_supervisor_storage_")}

    server = make_server(env={"AGENT_SUPERVISOR_OUTPUT_LOG_MAX_BYTES": "2048",
                              "AGENT_SUPERVISOR_OUTPUT_LOG_BACKUPS": "1"})
    folder = server.data_dir / "agents" / "rot"
    (folder / "output.log.1").mkdir(parents=True)
    (folder / "output.log.1" / "in-the-way").write_text("x")
    before = scrape()
    assert before["agent_supervisor_storage_errors_total{output}"] == 0
    assert before["agent_supervisor_storage_degraded"] == 0
    server.create(name="rot", command=WAITER)
    def degraded() -> dict[str, Any] | None:
        health: dict[str, Any] = server.get("/healthz")
        return health if health["status"] == "degraded" else None

    def counted() -> dict[str, float] | None:
        figures = scrape()
        return figures if figures["agent_supervisor_storage_output_bytes_lost_total"] > 0 else None

    def logged() -> list[str] | None:
        events = server.get("/api/agents/rot/events?limit=1000")["events"]
        lines = [e["data"]["line"] for e in events if e["type"] == "log"]
        return lines if "still here" in lines else None

    health = wait_for(degraded, 15, what="the failed rotation to show in /healthz")
    assert health is not None
    assert any("storage_failed" in r and "output.log" in r for r in health["reasons"]), health
    assert server.get("/api/agents/rot")["state"] == "running"
    figures = wait_for(counted, 10, what="/metrics to count the lost bytes")
    assert figures is not None
    assert figures["agent_supervisor_storage_errors_total{output}"] >= 1
    assert figures["agent_supervisor_storage_degraded"] == 1
    assert figures["agent_supervisor_storage_failure_episodes_total"] == 1
    stats = server.get("/api/sse/stats")["storage"]
    assert stats["output_bytes_lost"] == figures["agent_supervisor_storage_output_bytes_lost_total"]
    assert (folder / "output.log").stat().st_size <= 2048, "the bound holds while rotation fails"
    # The agent goes on: it takes input and its next line reaches its history.
    assert server.request("POST", "/api/agents/rot/input", {"data": "go\n"}).status == 204
    lines = wait_for(logged, 15, what="the agent's line after the failure")
    assert lines is not None
    assert [line for line in lines if line.startswith("line ")] == [f"line {i:03d} " + "x" * 40 for i in range(100)]
    shutil.rmtree(folder / "output.log.1")
    wait_for(lambda: server.get("/healthz")["status"] == "ok", 10, what="writing output.log to resume")
    assert scrape()["agent_supervisor_storage_degraded"] == 0
    assert server.get("/api/agents/rot")["state"] == "running"
    server.request("POST", "/api/agents/rot/stop", {})
    server.wait_state("rot", "exited")
