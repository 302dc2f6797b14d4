"""Two real servers sharing one real redis-server: any node streams and controls every agent.

Each test starts nodes A and B (``agent-supervisor serve --redis URL --node NAME`` in
subprocesses, each with its own data directory) on a redis-server of its own, and checks what a
user of B sees of an agent that runs on A: its history and live output with no gap and no
duplicate, a resume by ``Last-Event-ID``, its commands reaching A, the listing of both nodes,
A's agents declared ``lost`` once when A is killed, a wiped Redis, and Redis away for 5 s.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from support.cli import cli
from support.processes import Server, python_agent
from support.redis_server import RedisServer
from support.sse import SSEEvent, follow
from support.waiting import wait_for

pytestmark = pytest.mark.slow

#: Leases short enough for a test to see a node declared dead (the default is 15 s).
LEASE_TTL_S = "2"

#: An agent that prints a numbered line every 20 ms until told "quit" (then it says so and ends).
TICKER = python_agent(
    "import sys, threading, time\n"
    "n = 0\n"
    "stop = threading.Event()\n"
    "def tick():\n"
    "    global n\n"
    "    while not stop.is_set():\n"
    "        n += 1; print(f'tick {n}', flush=True); time.sleep(0.02)\n"
    "threading.Thread(target=tick, daemon=True).start()\n"
    "for line in sys.stdin:\n"
    "    print('heard', line.strip(), flush=True)\n"
    "    if line.strip() == 'quit':\n"
    "        stop.set(); break\n"
    "time.sleep(30)\n"
)


@pytest.fixture
def nodes(redis_server: RedisServer, make_server: Callable[..., Server]) -> Callable[..., Server]:
    """``start(name, **env)``: a node of the cluster on the test's Redis, with short leases."""

    def start(name: str, **env: str) -> Server:
        return make_server("--redis", redis_server.url, "--node", name,
                           env={"AGENT_SUPERVISOR_LEASE_TTL_S": LEASE_TTL_S, **env})

    return start


def state_on(server: Server, name: str) -> str | None:
    """The agent's state as ``server`` shows it (None: it does not know the agent, yet)."""
    response = server.request("GET", f"/api/agents/{name}")
    return response.json()["state"] if response.status == 200 else None


def ids(events: list[SSEEvent]) -> list[int]:
    return [int(e.id) for e in events if e.id is not None]


def lines_of(events: list[SSEEvent]) -> list[str]:
    return [e.json()["data"]["line"] for e in events if e.event == "log"]


def test_an_agent_on_a_streams_from_b_with_replay_live_and_resume(nodes: Callable[..., Server]) -> None:
    """B streams A's agent: its history (replay), then live output, then after a disconnect a
    resume with Last-Event-ID, and the ids and lines add up to A's history exactly: no gap, no
    duplicate. /api/stream on B shows A's agents; ids are one sequence."""
    a, b = nodes("A"), nodes("B")
    a.create(name="ticker", command=TICKER)
    wait_for(lambda: len(a.get("/api/agents/ticker/events?limit=100")["events"]) > 20, timeout=10,
             what="some history on A")
    seen: list[SSEEvent] = []
    with b.stream("/api/agents/ticker/stream") as stream:
        seen += stream.until(lambda e: e.event == "log" and e.json()["data"]["line"] == "tick 60", timeout=15)
    gap_started = lines_of(seen)[-1]
    with b.stream("/api/agents/ticker/stream", headers={"Last-Event-ID": str(ids(seen)[-1])}) as stream:
        resumed = stream.until(lambda e: e.event == "log" and e.json()["data"]["line"] == "tick 120", timeout=15)
    assert not [e for e in resumed if e.event == "reset"]
    got = [e for e in seen + resumed if e.id is not None]
    numbers = [int(line.split()[1]) for line in lines_of(got) if line.startswith("tick")]
    assert numbers == list(range(1, 121)), f"gap or duplicate around {gap_started}"
    assert ids(got) == sorted(set(ids(got)))
    history = a.get("/api/agents/ticker/events?limit=10000")["events"]
    assert [e["id"] for e in history][:len(got)] == ids(got)  # A's history, id for id
    assert [e["type"] for e in history][:len(got)] == [e.event for e in got]
    with b.stream("/api/stream") as everything:
        added = everything.until(lambda e: e.event == "agent_added", timeout=10)[-1]
    assert added.json()["data"]["agent"]["node"] == "A"
    b.request("POST", "/api/agents/ticker/stop", {})
    a.wait_state("ticker", "exited")


def test_input_and_stop_sent_to_b_reach_a_and_list_shows_both_nodes(nodes: Callable[..., Server]) -> None:
    """``input`` and ``stop`` posted to B are carried out on A (its own history says so); B
    lists both nodes' agents with their node, as does ``agent-supervisor list`` against B;
    names are unique across the cluster; a create with ``"node": "A"`` sent to B runs on A; an
    unknown node is 504 node_unavailable."""
    a, b = nodes("A"), nodes("B")
    a.create(name="on-a", command=TICKER)
    b.create(name="on-b", command=python_agent("import time; print('b here', flush=True); time.sleep(30)"))
    wait_for(lambda: {x["name"] for x in b.get("/api/agents")["agents"]} == {"on-a", "on-b"}, timeout=10,
             what="both agents listed on B")
    listed = {x["name"]: x for x in b.get("/api/agents")["agents"]}
    assert listed["on-a"]["node"] == "A" and listed["on-b"]["node"] == "B"
    assert b.get("/api/agents/on-a")["state"] == "running"
    taken = b.request("POST", "/api/agents", {"name": "on-a", "command": ["true"]})
    assert taken.status == 409 and taken.json()["error"]["code"] == "agent_name_taken"
    sent = b.request("POST", "/api/agents/on-a/input", {"data": "hello from b\n"})
    assert sent.status == 204, sent.body
    wait_for(lambda: "heard hello from b" in [e["data"].get("line") for e in
                                             a.get("/api/agents/on-a/events?limit=10000")["events"]],
             timeout=10, what="A's agent to hear B's input")
    result = cli("list", server=b)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert result.stdout.splitlines()[0].split()[:3] == ["NAME", "NODE", "STATE"]
    assert rows["on-a"][1:3] == ["A", "running"] and rows["on-b"][1:3] == ["B", "running"]
    stopped = b.request("POST", "/api/agents/on-a/stop", {"grace_s": 1})
    assert stopped.status == 202 and stopped.json()["node"] == "A"
    a.wait_state("on-a", "exited")
    wait_for(lambda: b.get("/api/agents/on-a")["state"] == "exited", timeout=10, what="B to see it exited")
    sent_to_a = b.request("POST", "/api/agents", {"name": "made-on-a", "command": TICKER, "node": "A"})
    assert sent_to_a.status == 201 and sent_to_a.json()["node"] == "A", sent_to_a.body
    assert a.get("/api/agents/made-on-a")["node"] == "A"  # A runs it: A's own registry has it
    a.request("POST", "/api/agents/made-on-a/stop", {"grace_s": 0})
    bad = b.request("POST", "/api/agents", {"name": "far", "command": ["true"], "node": "no such/node"})
    assert bad.status == 400 and bad.json()["error"]["code"] == "invalid_request"
    elsewhere = b.request("POST", "/api/agents", {"name": "far", "command": ["true"], "node": "nowhere"})
    assert elsewhere.status == 504 and elsewhere.json()["error"]["code"] == "node_unavailable"
    deleted = b.request("DELETE", "/api/agents/on-a")
    assert deleted.status == 204
    wait_for(lambda: "on-a" not in {x["name"] for x in b.get("/api/agents")["agents"]}, timeout=10,
             what="the deleted agent to leave B's list")
    b.request("POST", "/api/agents/on-b/stop", {"grace_s": 0})


def test_a_killed_node_has_its_agents_declared_lost_once(nodes: Callable[..., Server]) -> None:
    """kill -9 of node A: within its lease TTL plus a few seconds B shows A's running agent
    ``lost``, with one ``state`` lost and one ``complete`` in its history, even with a third
    node watching too; A started again does not say it a second time."""
    a, b, c = nodes("A"), nodes("B"), nodes("C")
    a.create(name="doomed", command=TICKER)
    wait_for(lambda: state_on(b, "doomed") == "running", timeout=10, what="B to see it run")
    assert a.process is not None
    killed = time.monotonic()
    os.kill(a.process.pid, signal.SIGKILL)
    a.process.wait(10)
    wait_for(lambda: b.get("/api/agents/doomed")["state"] == "lost", timeout=float(LEASE_TTL_S) + 8,
             what="B to declare A's agent lost")
    assert time.monotonic() - killed < float(LEASE_TTL_S) + 8
    time.sleep(float(LEASE_TTL_S))  # let C's watch run as well: it must find nothing left to do
    history = b.get("/api/agents/doomed/events?limit=10000")["events"]
    assert [e["type"] for e in history].count("complete") == 1
    assert [e["data"].get("state") for e in history if e["type"] == "state"][-1] == "lost"
    assert c.get("/api/agents/doomed")["state"] == "lost"
    a.stop()
    a.token = None  # a new token, read from the runtime file
    a.start()  # on its data directory: it ends what its killed run left, and says nothing twice
    assert a.get("/api/agents/doomed")["state"] == "lost"
    a.request("POST", "/api/agents/doomed/stop", {"grace_s": 0})  # (what the run left, if anything)
    again = a.get("/api/agents/doomed/events?limit=10000")["events"]
    assert [e["type"] for e in again].count("complete") == 1
    assert state_on(b, "doomed") in ("lost", "exited")


def test_a_node_paused_past_its_lease_is_fenced_and_registers_again(nodes: Callable[..., Server]) -> None:
    """Node A stopped (SIGSTOP) for longer than its lease: B declares its agent lost; when A
    runs again its writes are refused (fenced), it stops that agent without a second word on
    its stream, registers again, and new agents on A work and are seen from B."""
    a, b = nodes("A"), nodes("B")
    a.create(name="frozen", command=TICKER)
    wait_for(lambda: state_on(b, "frozen") == "running", timeout=10, what="B to see it run")
    assert a.process is not None
    os.kill(a.process.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: state_on(b, "frozen") == "lost", timeout=float(LEASE_TTL_S) + 8,
                 what="B to declare the paused node's agent lost")
    finally:
        os.kill(a.process.pid, signal.SIGCONT)
    wait_for(lambda: a.get("/api/agents/frozen")["state"] not in ("running", "stopping"), timeout=15,
             what="A to stop its agent once fenced")
    a.create(name="thawed", command=TICKER)
    wait_for(lambda: state_on(b, "thawed") == "running", timeout=10, what="B to see A's new agent")
    history = b.get("/api/agents/frozen/events?limit=10000")["events"]
    assert [e["type"] for e in history].count("complete") == 1
    assert [e["data"]["state"] for e in history if e["type"] == "state"][-1] == "lost"
    assert state_on(b, "frozen") == "lost"
    b.request("POST", "/api/agents/thawed/stop", {"grace_s": 0})


def test_a_wiped_redis_resets_clients_and_ids_keep_increasing(nodes: Callable[..., Server],
                                                             redis_server: RedisServer) -> None:
    """FLUSHALL while an agent prints: its stream on B ends and resumes into a ``reset``; the
    ids after are above every id before; the agent, still running on A, is listed again."""
    a, b = nodes("A"), nodes("B")
    a.create(name="survivor", command=TICKER)
    wait_for(lambda: state_on(b, "survivor") == "running", timeout=10, what="B to see it run")
    with b.stream("/api/agents/survivor/stream") as stream:
        before = stream.until(lambda e: e.event == "log" and e.json()["data"]["line"] == "tick 20", timeout=15)
        assert redis_server.command(b"FLUSHALL") == b"+OK"
        rest = list(stream.events(timeout=15))  # ends: the node resynced its live streams
    last = max(ids(before + rest))
    wait_for(lambda: b.request("GET", "/api/agents/survivor").status == 200, timeout=10,
             what="A's agent listed on B again")
    with b.stream("/api/agents/survivor/stream", headers={"Last-Event-ID": str(last)}) as stream:
        after = stream.until(lambda e: e.event == "log", timeout=15)
    reset = [e for e in after if e.event == "reset"]
    assert len(reset) == 1
    assert min(ids(after)) > last
    assert b.get("/api/agents/survivor")["state"] == "running"
    b.request("POST", "/api/agents/survivor/stop", {"grace_s": 0})


def test_redis_away_for_five_seconds_loses_nothing_within_the_bound(nodes: Callable[..., Server],
                                                                    redis_server: RedisServer) -> None:
    """Redis stopped for 5 s while an agent prints (with its data kept): A keeps the agent
    running, /healthz says degraded, and once Redis is back every line is in history, in order,
    once; a stream follower on B that resumes sees every line with no reset. A node with a
    small buffer counts what it dropped and its resumers get ``reset`` with that count."""
    # Leases outlive the outage here (a node away longer than its lease is fenced: the next test).
    ttl = {"AGENT_SUPERVISOR_LEASE_TTL_S": "15"}
    a, b = nodes("A", **ttl), nodes("B", **ttl)
    small = nodes("S", AGENT_SUPERVISOR_REDIS_BUFFER_EVENTS="20", **ttl)
    a.create(name="steady", command=TICKER)
    small.create(name="squeezed", command=TICKER)
    wait_for(lambda: len(b.get("/api/agents/steady/events?limit=100")["events"]) > 10, timeout=10,
             what="B to have some of it")
    last_before = b.get("/api/agents/squeezed/events?limit=10000")["events"][-1]["id"]
    redis_server.stop(save=True)
    wait_for(lambda: a.get("/healthz")["status"] == "degraded", timeout=5, what="A degraded")
    time.sleep(5)
    assert a.get("/api/agents/steady")["state"] == "running"
    redis_server.start()
    wait_for(lambda: a.get("/healthz")["status"] == "ok", timeout=15, what="A healthy again")
    a.request("POST", "/api/agents/steady/input", {"data": "quit\n"})
    events, _ = follow(b, "/api/agents/steady/stream", stop=lambda e: e.event == "log" and "heard quit" in e.data,
                       timeout=30)
    numbers = [int(line.split()[1]) for line in lines_of(events) if line.startswith("tick")]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > 250  # 5 s at 50 lines/s
    assert not [e for e in events if e.event == "reset"]
    stats = small.get("/api/sse/stats")["storage"]["redis"]
    assert stats["events_dropped"] > 0
    page = b.get(f"/api/agents/squeezed/events?after={last_before}&limit=10000")
    before = b.get(f"/api/agents/squeezed/events?after={last_before - 1}&limit=1")["events"][0]["data"]["line"]
    ticks = [int(e["data"]["line"].split()[1]) for e in page["events"] if e["type"] == "log"]
    missing = ticks[-1] - int(before.split()[1]) - len(ticks)  # the ticks numbered, and not there
    assert page["reset"] and page["missed"] == missing > 0
    for node, name in ((a, "steady"), (small, "squeezed")):
        node.request("POST", f"/api/agents/{name}/stop", {"grace_s": 0})

