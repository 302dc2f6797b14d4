"""Tests for supervisor.outputlog (rotation by size) and its download,
``GET /api/agents/<name>/output.log`` (api/output.py), against real files and a real server."""
from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

from supervisor.faults import StorageFaults
from supervisor.outputlog import RotatingOutput, kept_files, rotate

from support.processes import Server, python_agent


def contents(path: Path) -> list[bytes]:
    return [p.read_bytes() for p in kept_files(path, 0)]


def test_rotation_keeps_at_most_backups_plus_one_files_of_max_bytes(tmp_path: Path) -> None:
    """Before a write would pass max_bytes the file becomes .1 (.1 becomes .2 ...); the oldest
    past ``backups`` goes. No write is split; everything kept is the newest bytes, in order."""
    path = tmp_path / "output.log"
    faults = StorageFaults()
    output = RotatingOutput(path, max_bytes=100, backups=2, faults=faults)
    chunks = [bytes([65 + i % 26]) * 30 for i in range(20)]  # 600 bytes in 30-byte writes
    for chunk in chunks:
        output.write(chunk)
    output.close()
    files = kept_files(path, 2)
    assert [p.name for p in files] == ["output.log.2", "output.log.1", "output.log"]
    assert all(p.stat().st_size <= 100 for p in files)
    kept = b"".join(contents(path))
    assert kept == b"".join(chunks)[-len(kept):] and len(kept) >= 200, "the newest bytes, in order, whole writes"
    assert faults.total == 0


def test_no_backups_starts_again_and_zero_never_rotates(tmp_path: Path) -> None:
    """backups = 0: a full output.log starts again empty; max_bytes = 0: it just grows."""
    faults = StorageFaults()
    empty = RotatingOutput(tmp_path / "a.log", max_bytes=10, backups=0, faults=faults)
    for _ in range(5):
        empty.write(b"123456")
    empty.close()
    assert [p.name for p in kept_files(tmp_path / "a.log", 0)] == ["a.log"]
    assert (tmp_path / "a.log").read_bytes() == b"123456"
    grows = RotatingOutput(tmp_path / "b.log", max_bytes=0, backups=3, faults=faults)
    for _ in range(100):
        grows.write(b"x" * 100)
    grows.close()
    assert (tmp_path / "b.log").stat().st_size == 10_000 and len(kept_files(tmp_path / "b.log", 3)) == 1


def test_a_new_run_appends_and_fewer_backups_drop_the_rest(tmp_path: Path) -> None:
    """A writer opened on an existing file continues it (its size counts); a lower ``backups``
    deletes the extra files at the next rotation."""
    path = tmp_path / "output.log"
    faults = StorageFaults()
    first = RotatingOutput(path, max_bytes=50, backups=4, faults=faults)
    for _ in range(10):
        first.write(b"a" * 20)
    first.close()
    assert len(kept_files(path, 4)) == 5
    second = RotatingOutput(path, max_bytes=50, backups=1, faults=faults)
    assert second.size == path.stat().st_size
    second.write(b"b" * 40)
    second.close()
    assert [p.name for p in kept_files(path, 1)] == ["output.log.1", "output.log"]
    rotate(path, 0)  # no backups: nothing is kept past a rotation
    assert kept_files(path, 0) == []


def test_a_failed_write_is_counted_not_raised(tmp_path: Path) -> None:
    """A directory that cannot take the file: the writer counts the failure and drops the bytes."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    faults = StorageFaults()
    output = RotatingOutput(blocker / "output.log", max_bytes=10, backups=1, faults=faults)
    output.write(b"lost")
    output.flush()
    output.close()
    assert faults.counts["output"] >= 1


# ------------------------------------------------------------------------------- the download

FLOOD = python_agent("import sys\nfor i in range(4000): sys.stdout.write(f'line {i:05d} ' + 'x' * 40 + '\\n')\n")


def test_download_is_every_kept_byte_oldest_first(make_server: Callable[..., Server]) -> None:
    """The download is the rotated files then output.log, byte for byte, as an attachment; each
    file is at most output_log_max_bytes."""
    server = make_server(env={"AGENT_SUPERVISOR_OUTPUT_LOG_MAX_BYTES": "65536",
                              "AGENT_SUPERVISOR_OUTPUT_LOG_BACKUPS": "2"})
    server.create(name="flood", command=FLOOD)
    server.wait_state("flood", "exited")
    directory = server.data_dir / "agents" / "flood"
    files = kept_files(directory / "output.log", 2)
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
    for path in kept_files(server.data_dir / "agents" / "idle" / "output.log", 0):
        path.unlink()
    missing = server.request("GET", "/api/agents/idle/output.log")
    assert missing.status == 404 and missing.json()["error"]["code"] == "no_output_log"


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
