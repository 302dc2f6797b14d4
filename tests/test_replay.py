"""Replays in bounded steps: one history's cursor, the k-way merge of all, and the hub kept free
(issue 12: a replay of 245,000 events used to hold the whole server for 56 s)."""
from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor import replay as replay_module
from supervisor import segments
from supervisor.eventlog import EventLog
from supervisor.events import Event
from supervisor.history import AgentHistory
from supervisor.replay import LANE_EVENTS, MergedCursor, Pacer
from supervisor.spec import AgentSpec
from supervisor.store import AgentRecord

from support.net import http
from support.processes import Server
from support.waiting import wait_for


def files_open_under(folder: Path) -> list[str]:
    """Files under ``folder`` that this process holds open (from /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the descriptor of the listing itself, closed by now
        if target.startswith(f"{folder}/"):
            found.append(target)
    return found


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[AgentHistory | EventLog]]:
    """Histories and event logs a test makes: closed after it, and then no file of its folder
    may be left open in this worker (a cursor holds none between its steps)."""
    made: list[AgentHistory | EventLog] = []
    yield made
    for thing in made:
        thing.close()
    assert files_open_under(tmp_path) == []


def commit(history: AgentHistory, batch: list[Event]) -> None:
    history.write(batch, 0.0)
    history.append(batch)
    history.visible_id = batch[-1].id


def test_a_cursor_reads_files_in_bounded_steps_then_memory(tmp_path: Path, opened: list[Any]) -> None:
    """A cursor gives what read_after gives, whatever its steps: from the files in chunks of
    about max_bytes (never skipping to memory when a chunk held nothing new), then from memory."""
    history = AgentHistory("a", tmp_path, memory_size=300, segment_events=700)
    opened.append(history)
    for start in range(1, 3001, 50):
        commit(history, [Event(i, "log", "a", {"line": "x" * 80}) for i in range(start, start + 50)])
    everything = [e.id for e in history.read_after(0)]
    assert everything == list(range(1, 3001))
    for after in (0, 511, 513, 1024, 2650, 2999):  # around index entries, segment ends, memory
        cursor = history.cursor(after)
        got: list[int] = []
        while step := cursor.take(97, max_bytes=4096):
            assert len(step) <= 97
            got += [e.id for e in step]
        assert got == list(range(after + 1, 3001)), after


def test_a_cursor_stops_at_what_is_visible(tmp_path: Path, opened: list[Any]) -> None:
    """Events written but not yet committed (an fsync in flight) are not given to readers."""
    history = AgentHistory("a", tmp_path, memory_size=10)
    opened.append(history)
    commit(history, [Event(i, "log", "a", {}) for i in range(1, 21)])
    batch = [Event(i, "log", "a", {}) for i in range(21, 31)]
    history.write(batch, 0.0)
    history.append(batch)  # the event log moves visible_id after the fsync
    assert [e.id for e in history.read_after(15)] == [16, 17, 18, 19, 20]
    history.visible_id = 30
    assert [e.id for e in history.read_after(15)][-1] == 30


def test_the_merge_gives_every_channel_in_id_order_and_picks_up_new_ones(tmp_path: Path, opened: list[Any]) -> None:
    """The all-agents replay is every event once, in id order, with agents that appear and
    agents that grow while it runs, from files and from memory alike."""
    log = EventLog(tmp_path, history_size=50)
    opened.append(log)
    rng = random.Random(7)
    names = [f"agent-{n}" for n in range(12)]
    for _ in range(3000):
        log.append(rng.choice(names), "log", {"line": "y" * rng.randint(1, 300)})
    log.flush()
    cursor = log.replay(100)
    got = [e.id for e in cursor.take(500)]
    log.append("newcomer", "log", {"line": "late"})
    log.append(names[0], "log", {"line": "late too"})
    log.flush()
    while step := cursor.take(rng.randint(1, 700)):
        got += [e.id for e in step]
    assert got == list(range(101, log.last_id() + 1))


def test_the_merge_reads_each_channel_a_chunk_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        opened: list[Any]) -> None:
    """Incremental: a merge of 60 histories taken 50 events at a time reads each history about
    once per LANE_EVENTS of its own events, not 50 events of every history per step (the
    quadratic replay this replaced)."""
    log = EventLog(tmp_path, history_size=10)
    opened.append(log)
    names = [f"agent-{n}" for n in range(60)]
    for i in range(60 * 600):
        log.append(names[i % 60], "log", {"n": i})
    log.flush()
    reads = 0
    real_read = segments.Segment.read

    def counted(self: segments.Segment, offset: int, limit_bytes: int = segments.READ_CHUNK) -> Any:
        nonlocal reads
        reads += 1
        return real_read(self, offset, limit_bytes)

    monkeypatch.setattr(segments.Segment, "read", counted)
    cursor = log.replay(0)
    assert isinstance(cursor, MergedCursor)
    total = 0
    while step := cursor.take(50):
        total += len(step)
    assert total == 60 * 600
    assert reads <= 60 * (600 // LANE_EVENTS + 2), reads


def _write_history(data_dir: Path, name: str, first_id: int, count: int, step: int) -> int:
    """``count`` events of agent ``name`` with ids ``first_id, first_id + step, ...``, written as
    segment files the way the server writes them, and its record; returns the last id."""
    folder = data_dir / "agents" / name
    folder.mkdir(parents=True)
    record = AgentRecord(spec=AgentSpec(name=name, command=["true"]), state="exited", run=1)
    (folder / "agent.json").write_text(json.dumps(record.to_dict()))
    event_id = first_id
    for number, start in enumerate(range(0, count, 10_000), 1):
        lines = []
        for n in range(start, min(count, start + 10_000)):
            lines.append(f'{{"id":{event_id},"type":"log","timestamp":"2026-01-01T00:00:00.000Z","agent_name":"{name}",'
                         f'"data":{{"line":"line {n} of a long history","line_num":{n + 1},"stream":"stdout","run":1}}}}\n')
            event_id += step
        (folder / f"events.{number:06d}.jsonl").write_text("".join(lines))
    return event_id - step


class Replayer(threading.Thread):
    """A client reading a stream as fast as it can, counting ``id:`` lines."""

    def __init__(self, server: Server, path: str, expected: int) -> None:
        super().__init__(daemon=True)
        self.server, self.path, self.expected = server, path, expected
        self.count = 0
        self.done = threading.Event()

    def run(self) -> None:
        host, port = self.server.url.split("//")[1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                         f"Authorization: Bearer {self.server.token}\r\n\r\n".encode())
            tail = b""
            while self.count < self.expected:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data = tail + chunk
                self.count += data.count(b"\nid: ")
                tail = data[-8:]
        self.done.set()


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/api/stream", "/api/agents/big-1/stream"])
def test_healthz_answers_while_a_large_replay_runs(make_server: Any, tmp_path: Path, path: str) -> None:
    """While one client replays 300,000 events (every agent's, or one agent's), /healthz keeps
    answering, each time within its deadline (it used to wait for the whole replay)."""
    data = tmp_path / "replay-data"
    last = _write_history(data, "big-1", 1, 150_000, 2)
    _write_history(data, "big-2", 2, 150_000, 2)
    server = make_server(data_dir=data)
    expected = 300_000 if path == "/api/stream" else 150_000
    replayer = Replayer(server, path, expected)
    replayer.start()
    answered_during = 0
    deadline = time.monotonic() + 60
    while not replayer.done.is_set() and time.monotonic() < deadline:
        response = http(server.url, "GET", "/healthz", timeout=2.0)  # the deadline of each answer
        assert response.status == 200
        if not replayer.done.is_set() and 0 < replayer.count < expected:
            answered_during += 1
    replayer.join(10)
    assert replayer.count == expected, f"the replay stopped at {replayer.count} events"
    assert answered_during >= 3, "the replay was over before /healthz was asked: nothing measured"
    assert last == 299_999
    wait_for(lambda: server.get("/api/sse/stats")["clients_connected_total"] >= 1, 5)


def test_the_pacer_keeps_replays_to_their_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """After each step a replay rests as long as it worked (share 0.5), the debts of all
    replays adding up; small debts are carried (a timer would round them up to 1 ms)."""
    slept: list[float] = []
    paused: list[int] = []
    monkeypatch.setattr("gevent.sleep", lambda seconds=0: slept.append(seconds))
    monkeypatch.setattr(replay_module, "pause", lambda: paused.append(1))
    now = [100.0]
    monkeypatch.setattr("supervisor.replay.time.monotonic", lambda: now[0])
    pacer = Pacer(0.5)
    pacer.rest(0.004)  # one replay worked 4 ms: it rests 4 ms
    assert slept == [pytest.approx(0.004)]
    pacer.rest(0.004)  # another, in the same instant: its rest comes after the first one's
    assert slept[-1] == pytest.approx(0.008)
    now[0] += 1.0
    pacer.rest(0.0005)  # a small step, later: no timer, a pause, the debt carried
    assert paused == [1] and len(slept) == 2
    pacer.rest(0.0016)
    assert slept[-1] == pytest.approx(0.0021)
