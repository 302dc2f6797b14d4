"""SSE streams against a real server: replay, live tail, resume, fan-out, slow clients, stats."""
from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from support.processes import Server, python_agent
from support.sse import SSEEvent, follow, read_all
from support.waiting import wait_for


def ids(events: list[SSEEvent]) -> list[int]:
    return [int(e.id) for e in events if e.id is not None]


def logs(events: list[SSEEvent]) -> list[str]:
    """The complete lines the agent printed (not partials, not the echo of our input)."""
    data = [e.json()["data"] for e in events if e.event == "log"]
    return [d["line"] for d in data if not d.get("partial") and not d.get("echo")]


def is_complete(event: SSEEvent) -> bool:
    return event.event == "complete"


def is_final_line(event: SSEEvent, plain: str) -> bool:
    """Whether ``event`` is the complete log line whose text without escapes is ``plain``."""
    if event.event != "log":
        return False
    data = event.json()["data"]
    return not data.get("partial") and data.get("plain", data["line"]) == plain


def test_frames_headers_replay_then_live(server: Server) -> None:
    """A stream sends retry, connected, the history, then live events, as documented."""
    server.create(name="talker", command=python_agent(
        "import sys\nprint('before')\nsys.stdin.readline()\nprint('after')"))
    wait_for(lambda: any(e["data"].get("line") == "before" for e in server.get("/api/agents/talker/events")["events"]), 10)
    with server.stream("/api/agents/talker/stream") as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache" and stream.headers["x-accel-buffering"] == "no"
        first = stream.take()
        assert stream.retry == 3000 and bytes(stream.raw).startswith(b"retry: 3000\n\n")
        assert first.event == "connected" and first.id is None and first.json()["client_id"]
        replay = stream.until(lambda e: e.event == "log")
        assert logs(replay) == ["before"]
        server.request("POST", "/api/agents/talker/input", {"data": "go\n"})
        rest = stream.until(is_complete)
        assert "after" in logs(rest)
        assert stream.next() is None, "the response ends after complete"
    every = replay + rest
    assert ids(every) == sorted(set(ids(every))), "ids strictly increasing, no duplicates"
    envelope = replay[-1].json()
    assert set(envelope) == {"id", "type", "timestamp", "agent_name", "data"}
    assert envelope["data"]["stream"] == "stdout" and envelope["data"]["line_num"] == 1
    assert envelope["timestamp"].endswith("Z") and len(envelope["timestamp"]) == 24


def test_204_when_done_and_seen(server: Server) -> None:
    """Reconnecting at or past the final event of a finished agent gets 204 No Content."""
    server.create(name="quick", command=["echo", "hi"])
    server.wait_state("quick", "exited")
    last = server.get("/api/agents/quick")["last_event_id"]
    response = server.request("GET", "/api/agents/quick/stream", headers={"Last-Event-ID": str(last)})
    assert response.status == 204
    with server.stream("/api/agents/quick/stream", headers={"Last-Event-ID": str(last - 1)}) as stream:
        got = stream.until(is_complete)
        assert ids(got) == [last] and stream.next() is None


@pytest.mark.slow
def test_resume_mid_flood_has_no_gap_and_no_duplicate(server: Server) -> None:
    """A client that reconnects with Last-Event-ID while the agent floods misses nothing."""
    server.create(name="flood", command=python_agent("for i in range(30000): print('flood line', i)"))
    with server.stream("/api/agents/flood/stream") as first:
        # Leave mid-flood (or earlier, if the server drops this client for falling behind).
        part1 = [e for e, _ in zip(first.events(), range(3000)) if e.id is not None]
    assert part1, "got some events before leaving"
    # The rest, as a real client reads it: dropped if it falls behind, resuming each time.
    part2, _reconnects = follow(server, "/api/agents/flood/stream", part1[-1].id, timeout=90)
    every = ids(part1) + ids(part2)
    assert every == sorted(every) and len(every) == len(set(every))
    history = []
    after = 0
    while True:
        page = server.get(f"/api/agents/flood/events?after={after}&limit=10000")["events"]
        if not page:
            break
        history += [e["id"] for e in page]
        after = page[-1]["id"]
    assert every == history
    assert logs(part1 + part2) == [f"flood line {i}" for i in range(30000)]


def test_query_last_event_id_and_reset_from_the_future(server: Server) -> None:
    """?last_event_id= works like the header; an id from the future gets reset, then everything."""
    server.create(name="short", command=["printf", "a\\nb\\n"])
    server.wait_state("short", "exited")
    events = server.get("/api/agents/short/events")["events"]
    with server.stream(f"/api/agents/short/stream?last_event_id={events[1]['id']}") as stream:
        got = stream.until(is_complete)
        assert ids(got) == [e["id"] for e in events[2:]]
    with server.stream("/api/agents/short/stream?last_event_id=999999") as stream:
        got = stream.until(is_complete)
        reset = [e for e in got if e.event == "reset"]
        assert reset and reset[0].json()["missed"] == 0 and reset[0].id is None
        assert ids(got) == [e["id"] for e in events]


@pytest.mark.slow
def test_hundred_clients_get_identical_sequences(make_server: Callable[..., Server]) -> None:
    """100 concurrent clients of one agent all receive the same events in the same order."""
    # Queues large enough that a loaded test machine reading 100 sockets in one thread is not
    # a slow consumer: this test is about fan-out, test_slow_client_* about dropping.
    server = make_server(env={"AGENT_SUPERVISOR_QUEUE_SIZE": "100000", "AGENT_SUPERVISOR_QUEUE_BYTES": "100000000"})
    server.create(name="fan", command=python_agent(
        "import sys, time\nsys.stdin.readline()\n"
        "for i in range(1000):\n print('fan', i)\n if i % 10 == 0: time.sleep(0.01)"))
    streams = [server.stream("/api/agents/fan/stream") for _ in range(100)]
    try:
        for stream in streams:
            assert stream.take().event == "connected"
        wait_for(lambda: server.get("/api/sse/stats")["agents"]["fan"] == 100, 10, what="100 live clients")
        server.request("POST", "/api/agents/fan/input", {"data": "go\n"})
        sequences = [ids(events) for events in read_all(streams, is_complete, timeout=60)]
    finally:
        for stream in streams:
            stream.close()
    assert all(seq == sequences[0] for seq in sequences)
    assert len(sequences[0]) > 1000


@pytest.mark.slow
def test_slow_client_is_dropped_and_others_unaffected(server: Server) -> None:
    """A client that stops reading is dropped with slow_consumer; a normal one gets everything."""
    server.create(name="big", command=python_agent(
        "import sys, time\nsys.stdin.readline()\n"
        "for i in range(3000):\n print(str(i).ljust(4000, 'x'))\n if i % 10 == 0: time.sleep(0.005)"))
    slow = server.stream("/api/agents/big/stream", rcvbuf=4096)
    normal = server.stream("/api/agents/big/stream")
    try:
        assert slow.take().event == "connected" and normal.take().event == "connected"
        wait_for(lambda: server.get("/api/sse/stats")["agents"]["big"] == 2, 10)
        server.request("POST", "/api/agents/big/input", {"data": "go\n"})
        got = normal.until(is_complete, timeout=60)
        lines = logs(got)
        assert [int(line[:4].rstrip("x")) for line in lines] == list(range(3000))
        stats = server.get("/api/sse/stats")
        assert stats["clients_dropped_slow"] == 1
        # The slow client's response has ended: reading it through finds the end (and, if the
        # socket took it, the reason).
        tail = list(slow.events(timeout=30))
        assert slow.closed
        reasons = [e.json().get("reason") for e in tail if e.event == "error"]
        assert reasons in ([], ["slow_consumer"])
    finally:
        slow.close()
        normal.close()


def test_stats_follow_connects_and_disconnects(make_server: Callable[..., Server]) -> None:
    """Stats count clients per agent with details, and forget a client once it disconnects."""
    server = make_server()
    server.create(name="watched", command=["sleep", "30"])
    stream = server.stream("/api/agents/watched/stream")
    assert stream.take().event == "connected"
    stats = wait_for(lambda: (s := server.get("/api/sse/stats"))["agents"]["watched"] == 1 and s, 10)
    assert stats["total_clients"] == 1 and stats["total_agents"] == 1
    client = stats["clients"][0]
    assert client["agent"] == "watched" and client["remote_addr"] == "127.0.0.1"
    assert {"id", "connected_at", "queued", "sent"} <= set(client)
    for key in ("events_published", "events_delivered", "clients_dropped_slow", "uptime_s"):
        assert key in stats
    stream.close()
    wait_for(lambda: server.get("/api/sse/stats")["total_clients"] == 0, 10, what="client to be forgotten")
    server.request("POST", "/api/agents/watched/stop")
    server.wait_state("watched", "exited")


def test_vanished_client_is_cleaned_up(server: Server) -> None:
    """A client process killed mid-stream (no orderly close) is noticed and forgotten."""
    server.create(name="lonely", command=["sleep", "30"])
    code = f"""
import socket, sys, time
s = socket.create_connection(("127.0.0.1", {server.port}))
s.sendall(b"GET /api/agents/lonely/stream?token={server.token} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
s.recv(100)
print("connected", flush=True)
time.sleep(60)
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"connected\n"
        wait_for(lambda: server.get("/api/sse/stats")["agents"]["lonely"] == 1, 10)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
        if child.stdout:
            child.stdout.close()
    wait_for(lambda: server.get("/api/sse/stats")["total_clients"] == 0, 10, what="the vanished client to go")
    server.request("POST", "/api/agents/lonely/stop")
    server.wait_state("lonely", "exited")


def test_all_agents_stream_sees_both_agents_and_additions(make_server: Callable[..., Server]) -> None:
    """/api/stream carries agent_added and every agent's events, in one id sequence (a server of
    its own: the stream starts with the whole history)."""
    server = make_server()
    with server.stream("/api/stream") as stream:
        assert stream.take().event == "connected"
        wait_for(lambda: server.get("/api/sse/stats")["all_stream_clients"] == 1, 10)
        server.create(name="one", command=["echo", "from one"])
        server.create(name="two", command=["echo", "from two"])
        seen: dict[str, set[str]] = {"one": set(), "two": set()}

        def done(event: SSEEvent) -> bool:
            envelope = event.json()
            if envelope.get("agent_name") in seen:
                seen[envelope["agent_name"]].add(event.event)
            return all("complete" in kinds for kinds in seen.values())
        got = stream.until(done, timeout=20)
    assert all({"agent_added", "state", "log", "complete"} <= kinds for kinds in seen.values())
    assert ids(got) == sorted(ids(got))
    server.request("DELETE", "/api/agents/one")
    with server.stream("/api/stream", headers={"Last-Event-ID": str(ids(got)[-1])}) as stream:
        removed = stream.until(lambda e: e.event == "agent_removed", timeout=10)
        assert removed[-1].json()["data"]["name"] == "one"


def test_ping_keeps_idle_streams_alive(make_server: Callable[..., Server], tmp_path: Any) -> None:
    """An idle stream gets event: ping without an id at the keep-alive interval."""
    server = make_server(env={"AGENT_SUPERVISOR_KEEPALIVE_S": "0.3"})
    server.create(name="idle", command=["sleep", "30"])
    with server.stream("/api/agents/idle/stream") as stream:
        got = stream.until(lambda e: e.event == "ping", timeout=10)
        assert got[-1].id is None and "time" in got[-1].json()
    server.request("POST", "/api/agents/idle/stop")
    server.wait_state("idle", "exited")


def test_client_limit_gives_503(make_server: Callable[..., Server]) -> None:
    """Past the per-agent client limit a stream request gets 503 with Retry-After."""
    server = make_server(env={"AGENT_SUPERVISOR_MAX_CLIENTS_PER_AGENT": "2"})
    server.create(name="popular", command=["sleep", "30"])
    streams = [server.stream("/api/agents/popular/stream") for _ in range(2)]
    try:
        for s in streams:
            s.next()
        wait_for(lambda: server.get("/api/sse/stats")["agents"]["popular"] == 2, 10)
        refused = server.request("GET", "/api/agents/popular/stream")
        assert refused.status == 503 and refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "too_many_clients"
    finally:
        for s in streams:
            s.close()
    server.request("POST", "/api/agents/popular/stop")
    server.wait_state("popular", "exited")


def test_strip_ansi_option(server: Server) -> None:
    """?strip_ansi=1 sends log lines without escape sequences."""
    server.create(name="colour", command=["printf", "\\033[31mred\\033[0m\\n"])
    server.wait_state("colour", "exited")
    with server.stream("/api/agents/colour/stream?strip_ansi=1") as stream:
        data = [e.json()["data"] for e in stream.until(is_complete) if e.event == "log"]
    assert data[0]["line"] == "red" and "plain" not in data[0]
    with server.stream("/api/agents/colour/stream") as stream:
        data = [e.json()["data"] for e in stream.until(is_complete) if e.event == "log"]
    assert data[0]["line"] == "\x1b[31mred\x1b[0m" and data[0]["plain"] == "red"


def test_strip_ansi_and_plain_clients_share_live_flushes(server: Server) -> None:
    """Live, each client gets its own form of the same events: the flush frames the plain form
    once for all strip_ansi clients and sends the ordinary one to the rest."""
    server.create(name="painter", command=python_agent(
        "import sys\n"
        "for line in sys.stdin:\n"
        "    n = int(line)\n"
        "    for i in range(n, n + 3): print(f'\\033[3{i % 8}mline {i}\\033[0m', flush=True)\n"
        "    if n >= 6: break\n"))
    server.wait_state("painter", "running")
    paths = ["/api/agents/painter/stream?strip_ansi=1"] * 2 + ["/api/agents/painter/stream"] * 2
    streams = [server.stream(p) for p in paths]
    try:
        for s in streams:
            assert s.take().event == "connected"
        wait_for(lambda: server.get("/api/agents/painter")["clients"] == 4, 10)
        received: list[list[SSEEvent]] = [[] for _ in streams]
        for n in (0, 3, 6):
            # One input at a time, each after every client has its lines: typed back to back,
            # the echo of one input could land inside the next output line.
            server.request("POST", "/api/agents/painter/input", {"data": f"{n}\n"})
            last = f"line {n + 2}"
            for got, more in zip(received, read_all(streams, functools.partial(is_final_line, plain=last))):
                got.extend(more)
        for got, more in zip(received, read_all(streams, is_complete)):
            got.extend(more)
    finally:
        for s in streams:
            s.close()
    expected = [f"line {i}" for i in range(9)]
    for events in received[:2]:
        assert logs(events) == expected
    for events in received[2:]:
        data = [e.json()["data"] for e in events if e.event == "log" and not e.json()["data"].get("echo")]
        assert [d["plain"] for d in data if not d.get("partial")] == expected
        assert all(d["line"].startswith("\x1b[3") for d in data if not d.get("partial"))
    assert ids(received[0]) == ids(received[2]), "the same events, only framed differently"


def test_graceful_shutdown_stops_agents_and_ends_streams(make_server: Callable[..., Server]) -> None:
    """SIGTERM to the server stops its agents (their final events reach the streams) and exits 0."""
    server = make_server()
    server.create(name="worker", command=["sleep", "30"])
    with server.stream("/api/agents/worker/stream") as stream:
        stream.next()
        wait_for(lambda: server.get("/api/sse/stats")["agents"]["worker"] == 1, 10)
        assert server.stop() == 0
        got = list(stream.events(timeout=20))
    assert "complete" in [e.event for e in got]
    assert stream.closed


def test_reset_when_last_event_id_is_older_than_retained(make_server: Callable[..., Server]) -> None:
    """A Last-Event-ID older than the retained history gets reset with the missed count first."""
    server = make_server(env={"AGENT_SUPERVISOR_HISTORY_MAX_EVENTS": "50", "AGENT_SUPERVISOR_HISTORY_SIZE": "20"})
    server.create(name="long", command=python_agent("for i in range(500): print('line', i)"))
    server.wait_state("long", "exited")
    events = server.get("/api/agents/long/events?limit=10000")["events"]
    first = events[0]["id"]
    assert first > 100, "old events were dropped from disk"
    with server.stream("/api/agents/long/stream", headers={"Last-Event-ID": "3"}) as stream:
        stream.next()  # connected
        got = stream.until(is_complete)
    assert got[0].event == "reset" and got[0].json() == {"missed": first - 3 - 1, "first_available": first}
    assert ids(got) == [e["id"] for e in events]


@pytest.mark.slow
def test_connect_disconnect_churn_leaks_no_fds(server: Server) -> None:
    """2,000 stream connects and disconnects (some mid-replay) leave no fd, thread or client behind."""
    server.create(name="churn", command=["sh", "-c", "seq 1 300; sleep 30"])
    wait_for(lambda: server.get("/api/agents/churn")["lines"] >= 300, 10)
    assert server.process is not None
    pid = server.process.pid
    fd_dir = f"/proc/{pid}/fd"
    baseline = len(os.listdir(fd_dir))

    def threads() -> int:
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith("Threads:")).split()[1])
    thread_baseline = threads()
    request = f"GET /api/agents/churn/stream?token={server.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for i in range(2000):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(request)
        if i % 2:
            sock.recv(64)  # half of them leave after the first bytes, half at once
        sock.close()
    wait_for(lambda: server.get("/api/sse/stats")["total_clients"] == 0, 20, what="every client to be forgotten")
    wait_for(lambda: len(os.listdir(fd_dir)) <= baseline + 2, 20, what="server fds back to baseline")
    assert threads() <= thread_baseline + 1, "no thread per client"
    assert server.get("/api/sse/stats")["clients_connected_total"] >= 1000
    server.request("POST", "/api/agents/churn/stop")
    server.wait_state("churn", "exited")
