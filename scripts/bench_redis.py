#!/usr/bin/env python3
"""Append benchmark for the Redis backend: how many events/s one node writes into Redis.

One node (this process, one gevent hub, the client of ``supervisor.redis.connection``) joins
the epoch, takes its lease and appends ``--events`` log events spread over ``--agents``
channels, in batches of ``--batch`` events through ``lua/append.lua``, ``--depth`` batches
pipelined per round trip, into a redis-server of its own (``tests/support/redis_server.py``:
unix socket, no persistence) or the one at ``--url``. The retention is the default (100,000 in
the all-agents stream, 10,000 per channel), so the streams are being trimmed for most of the
run, as in steady state.

Each run reports events/s with everything the node pays from (type, agent, data) to an id:
building each envelope (``entries.envelope_tail``, the event's one serialization) and the script
calls. ``append_only_per_s`` leaves the envelopes out. It also reports the CPU of the client and
of redis-server over the run, and the host's CPU steal (a run with steal is a run of the host's
neighbours). Checks that the stream holds exactly the ids it was given. ``--repeat N`` ends
with the median of each configuration.

``--reference`` runs, alternately with each configuration, the simplest write there is: the
same events serialized whole and sent as plain pipelined ``XADD ... MAXLEN ~ 100000 *`` to one
stream (ids by Redis, no script, no second stream), ``batch x depth`` per round trip. The ratio
to it says what ids, fencing and the per-agent streams cost on this machine at this moment.

    scripts/bench_redis.py                          # batches of 100 and 500, depth 1 and 4
    scripts/bench_redis.py --batch 200 --depth 1 --repeat 5
    scripts/bench_redis.py --tcp --json results.json
    scripts/bench_redis.py --batch 500 --depth 1 --repeat 5 --reference
    scripts/bench_redis.py --eventlog --repeat 5     # the whole backend, append to published

``--eventlog`` measures the backend as the server uses it: ``RedisEventLog.append`` (queue,
serialize once), the writer's group commit, and the tailer reading each event back and
publishing it on the node's bus: ``written_per_s`` until Redis has acknowledged every event,
``events_per_s`` until the last one is published; ids checked dense and in order.

Loopback only; every run is bounded and stops by itself.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from supervisor.events import Event  # noqa: E402
from supervisor.redis import entries, epoch  # noqa: E402
from supervisor.redis.append import RETRY_WINDOW, Appender, Pending  # noqa: E402
from supervisor.redis.connection import connect  # noqa: E402
from supervisor.redis.keys import Keys  # noqa: E402
from supervisor.redis.lease import Lease  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[7], sum(fields[:8])


def make_events(n: int, agents: int, line_bytes: int) -> list[tuple[str, dict[str, Any]]]:
    """(agent, data) of ``n`` log events, round robin over the agents, like tick_agent lines."""
    pad = "x" * max(0, line_bytes - 40)
    return [(f"agent-{i % agents}", {"stream": "stdout", "line": f"tick n={i} ts={time.time_ns()} {pad}"})
            for i in range(n)]


def run(url: str, server_pid: int | None, events: int, batch: int, depth: int, agents: int,
        line_bytes: int, prefix: str) -> dict[str, Any]:
    client = connect(url, name="bench-redis")
    keys = Keys(prefix)
    client.delete(*keys.all(), *[keys.channel_stream(f"agent-{i}") for i in range(agents)], keys.lease("bench"))
    joined = epoch.join(client, keys)
    lease = Lease(client, keys, "bench", ttl_ms=600_000)
    lease.acquire()
    node = Appender(client, keys, lease, joined.id, floor=joined.seq)
    source = make_events(events, agents, line_bytes)

    ticks0 = cpu_ticks()
    own0 = cpu_seconds(os.getpid())
    redis0 = cpu_seconds(server_pid) if server_pid else 0.0
    start = time.perf_counter()
    prepare = 0.0
    firsts: list[int] = []
    at = 0
    while at < events:
        t0 = time.perf_counter()
        group: list[list[Pending]] = []
        for _ in range(depth):
            if at >= events:
                break
            chunk = source[at:at + batch]
            group.append([(agent, entries.envelope_tail("log", agent, data)) for agent, data in chunk])
            at += len(chunk)
        prepare += time.perf_counter() - t0
        firsts.extend(node.append_many(group))
    elapsed = time.perf_counter() - start
    own = cpu_seconds(os.getpid()) - own0
    redis_cpu = (cpu_seconds(server_pid) - redis0) if server_pid else None
    ticks1 = cpu_ticks()

    last = node.floor
    info = client.xinfo_stream(keys.stream)
    ok = (firsts[0] == joined.seq + 1 and last == joined.seq + events
          and entries.event_id(info["last-entry"][0]) == last and info["entries-added"] == events)
    lease.release()
    client.close()
    return {
        "target": "ours", "events": events, "batch": batch, "depth": depth, "agents": agents,
        "line_bytes": line_bytes,
        "events_per_s": round(events / elapsed),
        "append_only_per_s": round(events / max(1e-9, elapsed - prepare)),
        "seconds": round(elapsed, 3),
        "client_cpu_pct": round(100 * own / elapsed, 1),
        "redis_cpu_pct": None if redis_cpu is None else round(100 * redis_cpu / elapsed, 1),
        "host_steal_pct": round(100 * (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1]), 2),
        "ids_checked": ok,
    }


def run_reference(url: str, server_pid: int | None, events: int, batch: int, depth: int, agents: int,
                  line_bytes: int, prefix: str) -> dict[str, Any]:
    """Plain pipelined XADDs of whole envelopes to one stream: the floor to compare with."""
    client = connect(url, name="bench-redis-reference")
    key = Keys(prefix).tag + ":reference"
    client.delete(key)
    source = make_events(events, agents, line_bytes)
    ticks0 = cpu_ticks()
    redis0 = cpu_seconds(server_pid) if server_pid else 0.0
    start = time.perf_counter()
    at = 0
    while at < events:
        pipe = client.pipeline(transaction=False)
        for agent, data in source[at:at + batch * depth]:
            at += 1
            pipe.xadd(key, {"channel": agent, "event": Event(at, "log", agent, data).json}, maxlen=100_000)
        pipe.execute()
    elapsed = time.perf_counter() - start
    redis_cpu = (cpu_seconds(server_pid) - redis0) if server_pid else None
    ticks1 = cpu_ticks()
    ok = client.xinfo_stream(key)["entries-added"] == events
    client.delete(key)
    client.close()
    return {
        "target": "reference", "events": events, "batch": batch, "depth": depth,
        "events_per_s": round(events / elapsed), "seconds": round(elapsed, 3),
        "redis_cpu_pct": None if redis_cpu is None else round(100 * redis_cpu / elapsed, 1),
        "host_steal_pct": round(100 * (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1]), 2),
        "ids_checked": ok,
    }


def run_eventlog(url: str, server_pid: int | None, events: int, agents: int, line_bytes: int,
                 prefix: str) -> dict[str, Any]:
    """The whole backend: ``RedisEventLog.append`` from the hub as agents do (slices of 1,000
    then a yield, as a PTY reader gives way), its writer's group commit, its tailer reading
    every event back and publishing it on the bus; timed until the last one is published."""
    import gevent

    from supervisor.redis.backend import RedisEventLog

    client = connect(url, name="bench-redis-cleanup")
    keys = Keys(prefix)
    client.delete(*keys.all(), *[keys.channel_stream(f"agent-{i}") for i in range(agents)], keys.lease("bench"))
    client.close()
    log = RedisEventLog(url, "bench", prefix=prefix)
    published: list[int] = []
    subscription = log.subscribe(lambda sender, event: published.append(event.id))
    source = make_events(events, agents, line_bytes)
    ticks0 = cpu_ticks()
    own0 = cpu_seconds(os.getpid())
    redis0 = cpu_seconds(server_pid) if server_pid else 0.0
    start = time.perf_counter()
    for at in range(0, events, 1000):
        for agent, data in source[at:at + 1000]:
            log.append(agent, "log", data)
        gevent.sleep(0)
    log.writer.wait_idle(120)
    written = time.perf_counter() - start
    while len(published) < events and time.perf_counter() - start < 120:
        gevent.sleep(0.001)
    elapsed = time.perf_counter() - start
    own = cpu_seconds(os.getpid()) - own0
    redis_cpu = (cpu_seconds(server_pid) - redis0) if server_pid else None
    ticks1 = cpu_ticks()
    first = published[0] if published else 0
    ok = published == list(range(first, first + events)) and log.writer.dropped_total == 0
    subscription.close()
    log.close()
    return {
        "target": "eventlog", "events": events, "batch": "group commit", "depth": "-", "agents": agents,
        "line_bytes": line_bytes, "events_per_s": round(events / elapsed), "append_only_per_s": None,
        "written_per_s": round(events / written),
        "seconds": round(elapsed, 3), "client_cpu_pct": round(100 * own / elapsed, 1),
        "redis_cpu_pct": None if redis_cpu is None else round(100 * redis_cpu / elapsed, 1),
        "host_steal_pct": round(100 * (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1]), 2),
        "ids_checked": ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing Redis (default: start one of our own)")
    parser.add_argument("--tcp", action="store_true", help="our own Redis over loopback TCP, not its unix socket")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--depth", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--line-bytes", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--prefix", default="bench", help="key prefix (its keys are deleted first)")
    parser.add_argument("--reference", action="store_true", help="alternate with plain pipelined XADDs")
    parser.add_argument("--json", type=Path, help="write every run and the medians here")
    parser.add_argument("--eventlog", action="store_true",
                        help="the whole backend (RedisEventLog: append, group commit, tailer), not the appender")
    args = parser.parse_args()
    if any(d > RETRY_WINDOW for d in args.depth):
        parser.error(f"--depth is at most {RETRY_WINDOW}")

    server = None
    url, pid = args.url, None
    if url is None:
        from support.redis_server import RedisServer

        server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-redis-"))).start()
        url, pid = (server.tcp_url if args.tcp else server.url), server.pid
    runs: list[dict[str, Any]] = []
    if args.eventlog:
        try:
            for _ in range(args.repeat):
                result = run_eventlog(url, pid, args.events, args.agents, args.line_bytes, args.prefix)
                runs.append(result)
                print(json.dumps(result), flush=True)
        finally:
            if server is not None:
                server.close()
        rates = [r["events_per_s"] for r in runs]
        print("median", json.dumps({"target": "eventlog", "runs": len(runs),
                                    "median_written_per_s": round(statistics.median(r["written_per_s"] for r in runs)),
                                    "median_events_per_s": round(statistics.median(rates)),
                                    "all_ids_checked": all(r["ids_checked"] for r in runs)}))
        if args.json:
            args.json.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
        return 0 if all(r["ids_checked"] for r in runs) else 1
    try:
        for _ in range(args.repeat):
            for batch in args.batch:
                for depth in args.depth:
                    for bench in (run, run_reference) if args.reference else (run,):
                        result = bench(url, pid, args.events, batch, depth, args.agents, args.line_bytes, args.prefix)
                        runs.append(result)
                        print(json.dumps(result), flush=True)
    finally:
        if server is not None:
            server.close()
    medians = []
    for batch in args.batch:
        for depth in args.depth:
            mine = [r for r in runs if r["batch"] == batch and r["depth"] == depth and r["target"] == "ours"]
            median: dict[str, Any] = {
                "batch": batch, "depth": depth, "runs": len(mine),
                "median_events_per_s": round(statistics.median(r["events_per_s"] for r in mine)),
                "median_append_only_per_s": round(statistics.median(r["append_only_per_s"] for r in mine)),
                "all_ids_checked": all(r["ids_checked"] for r in mine),
            }
            reference = [r for r in runs if r["batch"] == batch and r["depth"] == depth and r["target"] == "reference"]
            if reference:
                median["reference_median_events_per_s"] = round(statistics.median(r["events_per_s"] for r in reference))
                median["ratio_to_reference"] = round(
                    median["median_events_per_s"] / median["reference_median_events_per_s"], 2)
            medians.append(median)
    for median in medians:
        print("median", json.dumps(median))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": medians}, indent=1) + "\n")
    return 0 if all(r["ids_checked"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
