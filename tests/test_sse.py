"""Units for SSE framing (api/sse.py) and the manager's queues, over real socketpairs."""
from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable

import gevent
import pytest

from api.sse import SSEManager
from api.sse import frames as sse
from api.sse.backlog import Backlog
from api.sse.connection import Connection
from supervisor.eventlog import EventLog
from supervisor.events import Event


def parse(data: bytes) -> list[dict[str, Any]]:
    """Frames as a browser's parser sees them: fields per blank-line-separated block."""
    frames = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            fields.setdefault(name, []).append(value)
        frames.append(fields)
    return frames


@pytest.mark.parametrize("payload", ["one", "two\nlines", "cr\rline", "crlf\r\nline", "trailing\n", "", "\n\n"])
def test_frame_is_newline_safe(payload: str) -> None:
    """Any payload becomes one frame whose data lines join back to the payload (line breaks as LF)."""
    data = sse.frame(payload, "log", 7)
    assert data.endswith(b"\n\n") and b"\n\n" not in data[:-2], "exactly one frame end"
    frames = parse(data)
    assert len(frames) == 1
    assert frames[0]["id"] == ["7"] and frames[0]["event"] == ["log"]
    expected = payload.replace("\r\n", "\n").replace("\r", "\n")
    assert "\n".join(frames[0]["data"]) == expected


def test_fields_cannot_be_injected() -> None:
    """An event name or id with line breaks cannot add fields or end the frame."""
    data = sse.frame("x", "log\nid: 99", "5\n\nevent: evil")
    frames = parse(data)
    assert len(frames) == 1 and frames[0]["event"] == ["logid: 99"] and frames[0]["id"] == ["5event: evil"]


def test_event_frame_is_encoded_once_and_cached() -> None:
    """A stored event is framed once; every later call returns the very same bytes object."""
    event = Event(42, "log", "a", {"line": "multi\nline \u00e9", "line_num": 1})
    first = sse.event_frame(event)
    assert sse.event_frame(event) is first
    frames = parse(first)
    assert frames[0]["id"] == ["42"] and len(frames[0]["data"]) == 1
    assert json.loads(frames[0]["data"][0])["data"]["line"] == "multi\nline \u00e9"


def test_retry() -> None:
    """retry: carries the reconnection delay in milliseconds."""
    assert sse.retry(3000) == b"retry: 3000\n\n"


# -- the manager's queues, with a socketpair standing in for the HTTP connection -------------

@pytest.fixture
def manager() -> Any:
    log = EventLog(None, history_size=1000)
    mgr = SSEManager(log, is_done=lambda name: False, queue_size=5, queue_bytes=10_000, keepalive_s=3600)
    mgr.start()
    yield mgr, log
    mgr.close()


def live_client(mgr: SSEManager, agent: str | None, rcvbuf: int | None = None) -> tuple[Connection, socket.socket]:
    server_side, client_side = socket.socketpair()
    if rcvbuf:
        client_side.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
    client = Connection("t", agent, "test", False, Backlog(mgr.queue_size, mgr.queue_bytes))
    mgr._clients[client.id + str(id(client))] = client
    server_side.setblocking(False)
    mgr._go_live(client, server_side, 0)
    return client, client_side


def drain(sock: socket.socket, until: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
    sock.setblocking(False)
    got = b""
    deadline = time.monotonic() + timeout
    while not until(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; got {got[-200:]!r}")
        try:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        except BlockingIOError:
            gevent.sleep(0.005)
    return got


def test_publish_reaches_live_clients_in_one_write(manager: Any) -> None:
    """Events published in one go reach a live client in order, in one write."""
    mgr, log = manager
    client, peer = live_client(mgr, "a")
    for i in range(3):
        log.append("a", "log", {"line": f"l{i}"})
    log.append("b", "log", {"line": "other agent"})
    data = drain(peer, lambda d: d.count(b"\n\n") >= 3)
    assert [json.loads(f["data"][0])["data"]["line"] for f in parse(data)] == ["l0", "l1", "l2"]
    assert client.events_sent == 3 and client.fast and not client.backlog


def test_client_leaves_and_rejoins_the_fast_path_without_losing_count(manager: Any) -> None:
    """A short write takes a client out of the fast path into its backlog; once the backlog is
    written it is back, and its ``sent`` count (kept by the group while fast) stays exact."""
    mgr, log = manager
    client, peer = live_client(mgr, "a", rcvbuf=4096)
    other, other_peer = live_client(mgr, "a")
    assert client.fast and other.fast
    published = 0
    for _ in range(20):  # 3 KB events, one flush each, until the socket stops taking them whole
        log.append("a", "log", {"line": "x" * 3000})
        published += 1
        gevent.sleep(0)
        if not client.fast:
            break
    assert not client.fast and client.backlog, "a short write leaves a backlog"
    assert not client.closed, "within the queue's bounds: kept"
    received = drain(peer, lambda d: d.count(b"\n\n") >= published)
    wait_until = time.monotonic() + 5
    while not client.fast:
        assert time.monotonic() < wait_until, "the drained client rejoins the fast path"
        gevent.sleep(0.005)
    for i in range(2):
        log.append("a", "log", {"line": f"after {i}"})
        published += 1
        gevent.sleep(0)
    received += drain(peer, lambda d: (received + d).count(b"\n\n") >= published)
    assert len(parse(received)) == published
    assert client.events_sent == published and client.describe()["sent"] == published
    assert other.fast and other.events_sent == published
    assert len(parse(drain(other_peer, lambda d: d.count(b"\n\n") >= published))) == published
    assert mgr.counters.events_delivered == 2 * published


def test_full_queue_drops_the_client_at_once(manager: Any) -> None:
    """A client whose queue passes queue_size is dropped; publishing never waits for it."""
    mgr, log = manager
    slow, slow_peer = live_client(mgr, "a", rcvbuf=4096)
    fast, fast_peer = live_client(mgr, "a")
    received = b""
    started = time.monotonic()
    fast_peer.setblocking(False)
    for i in range(200):
        log.append("a", "log", {"line": "x" * 2000, "n": i})
        gevent.sleep(0)  # let the writer loop run, as the PTY reader does after each chunk
        try:
            received += fast_peer.recv(1 << 20)
        except BlockingIOError:
            pass
    assert time.monotonic() - started < 5
    assert slow.closed and mgr.counters.clients_dropped_slow == 1
    assert not fast.closed
    before = received
    received += drain(fast_peer, lambda d: (before + d).count(b"\n\n") >= 200)
    assert [json.loads(f["data"][0])["data"]["n"] for f in parse(received)] == list(range(200))
    tail = drain(slow_peer, lambda d: False, timeout=2)  # reads to EOF
    assert tail.endswith(b'event: error\ndata: {"reason": "slow_consumer"}\n\n') or b"slow_consumer" not in tail


def test_byte_bound_drops_a_client_with_huge_lines(manager: Any) -> None:
    """A few huge events pass queue_bytes before queue_size: the byte bound drops the client."""
    mgr, log = manager
    client, _peer = live_client(mgr, "a", rcvbuf=4096)
    for _ in range(4):
        log.append("a", "log", {"line": "y" * 60_000})
        gevent.sleep(0)  # the writer loop runs between chunks of output
    assert client.closed and mgr.counters.clients_dropped_slow == 1


def test_hang_up_is_noticed_and_client_forgotten(manager: Any) -> None:
    """A peer that closes its end is noticed by the read watcher and the client is cleaned up."""
    mgr, log = manager
    client, peer = live_client(mgr, None)
    assert mgr.stats(["a"])["all_stream_clients"] == 1
    peer.close()
    deadline = time.monotonic() + 5
    while not client.closed and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert client.closed and mgr.stats([])["all_stream_clients"] == 0


def test_complete_ends_the_agent_stream_after_it_is_written(manager: Any) -> None:
    """After the complete event is written, an agent stream's socket is shut down."""
    mgr, log = manager
    client, peer = live_client(mgr, "a")
    log.append("a", "complete", {"state": "exited"})
    data = drain(peer, lambda d: False, timeout=5)  # EOF ends the drain
    assert parse(data)[-1]["event"] == ["complete"] and client.closed
