#!/usr/bin/env python3
"""SSE benchmark: a real server, a real agent under a PTY, and a fast load client.

For each scenario: start ``agent-supervisor serve`` on a fresh data dir, start
``scripts/tick_agent.py`` in it (``tick n=<n> ts=<ns>`` lines at a fixed rate, or flat out),
connect N SSE clients with ``sseload`` (Node, raw sockets: a Python client saturates before the
server does) and report delivered events/s, loss, print-to-receive latency p50/p99, server CPU
and server RSS per client, and the host's CPU steal over the window (on a shared VM a run with
steal is a run of the host's neighbours, not of ours). Results go to stdout as one line per run
and, with ``--json``, to a file.

``replay-250k`` (issue 12) measures replay against live streaming on one server: an agent
prints 250,000 lines and ends, then 100 clients watch a ticker at 100 lines/s for two windows,
the second while one more client replays the 250,000 events again and again (alternately one
agent's stream and ``/api/stream``, the all-agents merge), and a probe asks ``/healthz`` every
20 ms throughout. It reports the watchers' p99 in each window and their ratio, the replays'
events/s, and the probe's slowest answers.

``--backend redis`` runs our server on the Redis backend (a redis-server of the run's own,
one node), ``--backend both`` alternates the two, so that what Redis adds is measured in the
same minutes. ``cluster-2x2500`` (issue 16, run only when named) starts two nodes on one
redis-server with the tick agent at 20 lines/s on node A, and 2,500 clients on each node.

``--reference`` also runs each fixed-rate scenario against ``reference_sse_server.py``, the
simplest fan-out there is (an in-process timer and one send per client), alternating with ours,
so that the two are measured on the same machine in the same minutes; ``--reference pty`` runs
it with the tick agent's lines read from a PTY instead (the floor for relaying a real agent),
``--reference both`` runs the two. ``--repeat N`` runs each N times and ends with the median.

``tui-1mb`` puts a full-screen agent (``scripts/tui_agent.py``, 1 MB/s of TUI drawing, which
the server's virtual screen follows) beside the tick agent, and runs alternately with the same
scenario without it (target ``ours-no-tui``): the ratio of the two p99s of the tick agent's
clients is what a TUI costs the others (the goal: at most 1.2). The TUI agent's rate is checked
from its output log, and its screen from ``GET /screen``.

    scripts/bench_sse.py                       # every scenario
    scripts/bench_sse.py fanout-1000 --duration 20
    scripts/bench_sse.py fanout-1000 --repeat 5 --reference
    scripts/bench_sse.py fanout-1000 --repeat 5 --reference both
    scripts/bench_sse.py --sseload /path/to/sseload
    scripts/bench_sse.py replay-250k --repeat 3
    scripts/bench_sse.py fanout-1000 --durability fsync   # what fsync per batch costs
    scripts/bench_sse.py fanout-1000 --repeat 5 --base ../base  # against another checkout
    scripts/bench_sse.py fanout-1000 --backend both --repeat 5   # what the Redis backend adds
    scripts/bench_sse.py cluster-2x2500                  # two nodes, 2,500 clients each

Loopback only; every run is bounded in time and stops by itself.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SSELOAD = ROOT.parent / "shared" / "tools" / "sseload"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Runs with less host CPU steal than this (percent of the machine) count as quiet.
QUIET_STEAL_PCT = 1.0
#: ... and other work inside the VM under this (percent of one core: other sessions' tests).
QUIET_OTHERS_PCT = 25.0


@dataclass(frozen=True)
class Scenario:
    name: str
    clients: int
    rate: float  # lines/s; 0 = flat out
    size: int = 120
    slow: int = 0
    ramp: float = 2.0
    #: Seconds from the last connection to the window. Each client connects with the id of the
    #: agent's first line and catches up on what was printed while the others connected (about
    #: 500 events for the last of 1,000); the window starts once those replays and the load
    #: client's collection of their garbage are over.
    warmup: float = 2.0
    goal: str = ""
    #: Lines the agent prints before clients connect, so that the server's in-memory history is
    #: full and the RSS baseline is not the history filling up.
    prewarm_lines: int = 1
    #: Bytes per second of a full-screen agent beside the tick agent (0: none).
    tui_rate: int = 0
    #: Events of a finished agent replayed by one more client during the second window (0: no
    #: replay scenario).
    replay: int = 0


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("fanout-1000", 1000, 100, ramp=5, warmup=5, goal="all connected, 0 loss, p99 <= 11 ms"),
        Scenario("fanout-5000", 5000, 20, ramp=15, warmup=5, goal="all connected, 0 loss, p99 <= 100 ms, <= 12 KB/client"),
        Scenario("flood-10", 10, 0, ramp=0.5, goal=">= 20k lines/s each, from a real agent"),
        Scenario("fanout-10", 10, 100, ramp=0.5, goal="(a baseline)"),
        Scenario("control-50", 50, 400, size=4096, ramp=1, prewarm_lines=4000,
                 goal="(slow-50+1 without the slow client: the RSS baseline)"),
        Scenario("slow-50+1", 51, 400, size=4096, slow=1, ramp=1, prewarm_lines=4000,
                 goal="slow one dropped, RSS +2 MB at most, the 50 unaffected"),
        Scenario("tui-1mb", 100, 100, ramp=1, tui_rate=1_000_000,
                 goal="p99 of the line agent's clients at most 1.2x the same without the TUI agent"),
        Scenario("cluster-2x2500", 5000, 20, ramp=15, warmup=5,
                 goal="2 nodes x 2,500 clients, the agent on node A: every client gets every event, 0 loss"),
        Scenario("replay-250k", 100, 100, ramp=1, warmup=2, replay=250_000,
                 goal="p99 within 1.5x of the window without the replay, /healthz within 50 ms, >= 100k events/s replayed"),
    )
}


def _get(url: str, headers: dict[str, str] | None = None) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
        return json.load(response)


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _log_bytes(log: Path) -> int:
    """Bytes in an agent's output log and its rotated backups (the TUI agent's 1 MB/s rotates
    the 10 MB log within a run: the log alone would count only what came after)."""
    if not log.parent.exists():
        return 0
    return sum(p.stat().st_size for p in log.parent.glob(log.name + "*"))


def _worker_cpu_seconds(server_pid: int) -> dict[int, float]:
    """CPU seconds of each screen worker of the server (its children running
    ``supervisor.screen.worker``), by pid."""
    found: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != server_pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"supervisor.screen.worker" not in f.read():
                    continue
        except (OSError, IndexError, ValueError):
            continue
        found[int(entry)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return found


def _cpu_ticks() -> tuple[int, int, int, int]:
    """(steal, total, idle, busy) jiffies of the whole machine, from /proc/stat (idle with
    iowait; busy: user, nice and system time of processes; interrupts are left out, since the
    kernel's loopback delivery of our own packets is softirq time that no process is charged
    for)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[7], sum(fields[:8]), fields[3] + fields[4], fields[0] + fields[1] + fields[2]


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and every live process below it (the server and its agents)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += _cpu_seconds(current)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _others_cpu_pct(ticks_start: tuple[int, int, int, int], ticks_end: tuple[int, int, int, int], seconds: float,
                    *own_cpu_seconds: float) -> float:
    """CPU of everything on the machine but the server (with its agents) and the load client, in
    percent of one core: other work inside the VM (the host's neighbours are ``host_steal_pct``)."""
    busy = (ticks_end[3] - ticks_start[3]) / CLK_TCK
    return round(max(0.0, busy - sum(own_cpu_seconds)) / max(0.001, seconds) * 100, 1)


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


#: Extra environment for our server (``--durability`` sets AGENT_SUPERVISOR_DURABILITY).
SERVER_ENV: dict[str, str] = {}


class ServerProcess:
    """A server that prints ``serving on <url>`` once it listens: ours, or the reference."""

    def __init__(self, argv: list[str], log_path: Path, cwd: Path = ROOT) -> None:
        env = {
            **os.environ,
            "AGENT_SUPERVISOR_MAX_CLIENTS": "20000",
            "AGENT_SUPERVISOR_MAX_CLIENTS_PER_AGENT": "20000",
            "PYTHONUNBUFFERED": "1",
            **SERVER_ENV,
        }
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "serving on" not in line:
            raise SystemExit(f"server did not start: {line!r}")
        self.url = line.split("serving on", 1)[1].strip()

    #: Called after the server stopped (the redis-server a ``redis`` run started for it).
    after_stop: Callable[[], None] | None = None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if self.after_stop is not None:
            self.after_stop()


#: Another checkout of this project (``--base``): its server runs as target ``base``, alternating
#: with ours, to measure a change against the commit before it in the same minutes.
BASE_CHECKOUT: list[Path] = []


def _redis_server(tmp: Path) -> Any:
    """A redis-server of the run's own (tests/support/redis_server.py: unix socket, nothing
    persisted), for the ``redis`` target and the cluster scenario."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.redis_server import RedisServer

    return RedisServer(tmp / "redis").start()


def _start_ours(scenario: Scenario, tmp: Path, checkout: Path = ROOT, tui: bool = True,
                args: tuple[str, ...] = (), data: str = "data") -> tuple[ServerProcess, str, dict[str, str]]:
    """agent-supervisor with the tick agent under a PTY (and the TUI agent, if the scenario has
    one and ``tui``); the tick agent's stream URL and request headers. ``checkout`` is where
    ``python -m supervisor`` imports the server from (the agents are always this checkout's, so
    both targets relay the same agents); ``args``: more ``serve`` options (``--redis URL --node
    NAME``), ``data`` the data directory's name under ``tmp``."""
    server = ServerProcess(
        [sys.executable, "-m", "supervisor", "serve", "--port", "0", "--data-dir", str(tmp / data), *args],
        tmp / f"server-{data}.log",
        cwd=checkout,
    )
    try:
        # The default configuration, token included: the one written to server.json.
        token = json.loads((tmp / data / "server.json").read_text())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        if scenario.replay:
            _fill_history(server.url, auth, scenario.replay)
        agent = [sys.executable, str(ROOT / "scripts" / "tick_agent.py"), "--rate", str(scenario.rate),
                 "--size", str(scenario.size)]
        _post(server.url + "/api/agents", {"name": "ticker", "command": agent}, auth)
        if scenario.tui_rate and tui:
            drawing = [sys.executable, str(ROOT / "scripts" / "tui_agent.py"), "--rate", str(scenario.tui_rate)]
            _post(server.url + "/api/agents", {"name": "tui", "command": drawing, "cols": 120, "rows": 40}, auth)
        deadline = time.monotonic() + 60
        while _get(server.url + "/api/agents/ticker", auth)["lines"] < scenario.prewarm_lines:
            if time.monotonic() > deadline:
                raise SystemExit("the tick agent printed nothing")
            time.sleep(0.05)
        last_id = _get(server.url + "/api/agents/ticker", auth)["last_event_id"]
    except BaseException:
        server.stop()
        raise
    return server, f"{server.url}/api/agents/ticker/stream", {"Last-Event-ID": str(last_id), **auth}


def _fill_history(url: str, auth: dict[str, str], lines: int) -> None:
    """An agent that prints ``lines`` lines flat out and ends: the history a replay reads."""
    command = [sys.executable, str(ROOT / "scripts" / "tick_agent.py"), "--rate", "0", "--count", str(lines)]
    _post(url + "/api/agents", {"name": "history", "command": command}, auth)
    deadline = time.monotonic() + 600
    while _get(url + "/api/agents/history", auth)["state"] != "exited":
        if time.monotonic() > deadline:
            raise SystemExit("the history agent did not finish")
        time.sleep(0.2)


def _start_reference(scenario: Scenario, tmp: Path, pty: bool = False) -> tuple[ServerProcess, str, dict[str, str]]:
    server = ServerProcess(
        [sys.executable, str(ROOT / "scripts" / "reference_sse_server.py"), "--rate", str(scenario.rate),
         "--size", str(scenario.size), *(["--pty"] if pty else [])],
        tmp / "server.log",
    )
    return server, f"{server.url}/stream", {}


def _start_redis(scenario: Scenario, tmp: Path) -> tuple[ServerProcess, str, dict[str, str]]:
    """Ours on the Redis backend (one node, a redis-server of its own)."""
    redis = _redis_server(tmp)
    try:
        server, url, headers = _start_ours(scenario, tmp, args=("--redis", redis.url, "--node", "bench"))
    except BaseException:
        redis.close()
        raise
    server.after_stop = redis.close
    return server, url, headers


Starter = Callable[[Scenario, Path], tuple[ServerProcess, str, dict[str, str]]]
STARTERS: dict[str, Starter] = {
    "ours": _start_ours,
    "ours-no-tui": lambda scenario, tmp: _start_ours(scenario, tmp, tui=False),
    "redis": _start_redis,
    "reference": _start_reference,
    "reference-pty": lambda scenario, tmp: _start_reference(scenario, tmp, pty=True),
    "base": lambda scenario, tmp: _start_ours(scenario, tmp, BASE_CHECKOUT[0]),
}


def run(scenario: Scenario, sseload: str, duration: float, target: str = "ours") -> dict[str, Any]:
    start = STARTERS[target]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server, stream_url, headers = start(scenario, Path(tmp))
        try:
            pid = server.proc.pid
            rss_before = _rss_kb(pid)
            result_file = Path(tmp) / "sseload.json"
            cmd = [
                sseload, "--url", stream_url, "--clients", str(scenario.clients),
                "--duration", str(duration), "--ramp", str(scenario.ramp), "--warmup", str(scenario.warmup),
                "--slow", str(scenario.slow), "--json", str(result_file), "--quiet", "--wait-connect", "30",
            ]
            for name, value in headers.items():
                cmd += ["--header", f"{name}: {value}"]
            if scenario.rate:
                cmd += ["--expect-rate", str(scenario.rate)]
            if scenario.tui_rate:
                # Event ids are the server's, shared by all agents: the TUI agent's screen events
                # take ids between the tick agent's. Gaps are checked on the tick numbers.
                cmd += ["--seq-regex", r"tick n=(\d+)"]
            load = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            # Sample the server over the measurement window (sseload starts it after ramp+warmup).
            time.sleep(scenario.ramp + scenario.warmup)
            tui_log = Path(tmp) / "data" / "agents" / "tui" / "output.log"
            tui_bytes = _log_bytes(tui_log)
            cpu_start, t_start, ticks_start = _cpu_seconds(pid), time.monotonic(), _cpu_ticks()
            tree_start = _tree_cpu_seconds(pid)
            load_start = load_now = _cpu_seconds(load.pid)
            workers_start = _worker_cpu_seconds(pid)
            rss_peak = 0
            while load.poll() is None and time.monotonic() - t_start < duration:
                rss_peak = max(rss_peak, _rss_kb(pid))
                try:
                    load_now = _cpu_seconds(load.pid)
                except OSError:  # it has just ended
                    break
                time.sleep(0.25)
            window = max(0.001, time.monotonic() - t_start)
            server_seconds = _cpu_seconds(pid) - cpu_start
            cpu = server_seconds / window
            workers = _worker_cpu_seconds(pid)
            worker_cpu = sum(t - workers_start.get(p, 0.0) for p, t in workers.items()) / window
            tui_rate = ((_log_bytes(tui_log) - tui_bytes) / window) if tui_log.exists() else 0.0
            tui_screen = None
            if tui_log.exists():
                screen = _get(server.url + "/api/agents/tui/screen", headers)
                tui_screen = f"{screen['cols']}x{screen['rows']} alternate={screen['alternate']} seq={screen['seq']}"
            ticks_end = _cpu_ticks()
            others = _others_cpu_pct(ticks_start, ticks_end, window, _tree_cpu_seconds(pid) - tree_start,
                                     load_now - load_start)
            elapsed = max(1, ticks_end[1] - ticks_start[1])
            steal = (ticks_end[0] - ticks_start[0]) / elapsed
            busy = 1 - (ticks_end[2] - ticks_start[2]) / elapsed - steal
            dropped = (_get(server.url + "/api/sse/stats", headers)["clients_dropped_slow"]
                       if target in ("ours", "base") else None)
            summary, _ = load.communicate(timeout=duration + 120)
            result = json.loads(result_file.read_text())
        finally:
            server.stop()
    events, latency, conns = result["events"], result["latency_ms"], result["connections"]
    normal = scenario.clients - scenario.slow
    return {
        "scenario": scenario.name,
        "target": target,
        "goal": scenario.goal,
        "clients": scenario.clients,
        "rate": scenario.rate or "flat out",
        "line_bytes": scenario.size,
        "connected": conns["established"],
        "events_per_s_total": events["per_sec"],
        "events_per_s_per_client": events["per_client_per_sec"],
        "loss_pct": events["loss_pct"],
        "missing": events["missing_ids"],
        "duplicates": events["duplicate_ids"],
        "normal_dropped": conns["normal_dropped_in_window"] + conns["normal_dropped_before_window"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "max_ms": latency["max"],
        "server_cpu_pct": round(cpu * 100, 1),
        # The screen workers' (separate processes, not in server_cpu_pct).
        "screen_worker_cpu_pct": round(worker_cpu * 100, 1),
        "server_rss_mb_before": round(rss_before / 1024, 1),
        "server_rss_mb_peak": round(rss_peak / 1024, 1),
        "server_rss_kb_per_client": round((rss_peak - rss_before) / max(1, normal), 2),
        "host_steal_pct": round(steal * 100, 1),
        # Every process of the VM, the server, agents and load client included (100 = all cores):
        # other work on the machine shows as what is left above the server and sseload.
        "machine_busy_pct": round(busy * 100, 1),
        "others_cpu_pct": others,
        "slow_clients_dropped": dropped,
        "tui_bytes_per_s": round(tui_rate),
        "tui_screen": tui_screen,
        "slow": [{k: s[k] for k in ("server_closed", "server_close_after_s", "events_total_after_drain")}
                 for s in result.get("slow", [])],
        "sseload": summary.strip(),
        "timeline": result.get("timeline", []),
    }


class Replayer(threading.Thread):
    """One client replaying a finished agent's history again and again until stopped: odd
    replays its own stream (which ends after ``complete``), even ones ``/api/stream`` from the
    start (read up to that ``complete``). Counts ``id:`` lines, no parse: a Python client that
    parses falls behind the server."""

    def __init__(self, url: str, auth: dict[str, str], complete_id: int) -> None:
        super().__init__(daemon=True)
        self.url, self.auth, self.complete_id = url, auth, complete_id
        self.stopping = threading.Event()
        self.rates: dict[str, list[float]] = {"agent": [], "all": []}
        self.counts: list[int] = []

    def run(self) -> None:
        for n in range(10_000):
            if self.stopping.is_set():
                return
            path = "/api/agents/history/stream" if n % 2 == 0 else "/api/stream"
            count, seconds = self._replay(path)
            if count and not self.stopping.is_set():
                self.rates["agent" if n % 2 == 0 else "all"].append(count / seconds)
                self.counts.append(count)

    def _replay(self, path: str) -> tuple[int, float]:
        host, port = self.url.split("//", 1)[1].rsplit(":", 1)
        end = b"\nid: %d\n" % self.complete_id
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            head = "".join(f"{k}: {v}\r\n" for k, v in self.auth.items())
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}\r\n".encode())
            count, tail, started = 0, b"", time.monotonic()
            while not self.stopping.is_set():
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data = tail + chunk
                count += data.count(b"\nid: ")
                if end in data:
                    break
                tail = data[-24:]
            return count, time.monotonic() - started


class HealthProbe(threading.Thread):
    """``GET /healthz`` every 20 ms on a fresh connection; keeps each answer's time."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.ms: list[float] = []

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            started = time.monotonic()
            try:
                _get(self.url + "/healthz")
            except OSError:
                self.ms.append(10_000.0)
                continue
            self.ms.append((time.monotonic() - started) * 1000)


def _window(scenario: Scenario, sseload: str, duration: float, stream_url: str, headers: dict[str, str],
            tmp: Path, server: ServerProcess, label: str) -> dict[str, Any]:
    """One sseload window over the watchers, with the server's CPU and the host's steal."""
    result_file = tmp / f"sseload-{label}.json"
    cmd = [sseload, "--url", stream_url, "--clients", str(scenario.clients), "--duration", str(duration),
           "--ramp", str(scenario.ramp), "--warmup", str(scenario.warmup), "--json", str(result_file),
           "--quiet", "--wait-connect", "30", "--expect-rate", str(scenario.rate)]
    for name, value in headers.items():
        cmd += ["--header", f"{name}: {value}"]
    load = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    time.sleep(scenario.ramp + scenario.warmup)
    pid = server.proc.pid
    cpu_start, t_start, ticks_start = _cpu_seconds(pid), time.monotonic(), _cpu_ticks()
    mine_start, load_start, tree_start = _own_cpu_seconds(), _cpu_seconds(load.pid), _tree_cpu_seconds(pid)
    load_now = load_start
    while load.poll() is None and time.monotonic() - t_start < duration + 120:
        try:
            load_now = _cpu_seconds(load.pid)
        except OSError:  # it has just ended
            break
        time.sleep(0.25)
    load.wait(120)
    seconds = max(0.001, time.monotonic() - t_start)
    server_seconds = _cpu_seconds(pid) - cpu_start
    ticks_end = _cpu_ticks()
    steal = (ticks_end[0] - ticks_start[0]) / max(1, ticks_end[1] - ticks_start[1])
    # This process is the replayer and the health probe: its CPU is not "other work".
    others = _others_cpu_pct(ticks_start, ticks_end, seconds, _tree_cpu_seconds(pid) - tree_start,
                             load_now - load_start, _own_cpu_seconds() - mine_start)
    result = json.loads(result_file.read_text())
    return {"result": result, "cpu": server_seconds / seconds, "steal": steal, "others": others}


def run_replay(scenario: Scenario, sseload: str, duration: float) -> dict[str, Any]:
    """The replay scenario: a window of the watchers alone, then one with the replayer."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server, stream_url, headers = _start_ours(scenario, Path(tmp))
        try:
            auth = {"Authorization": headers["Authorization"]}
            replayed = _get(server.url + "/api/agents/history/events?after=0&limit=1", auth)["events"]
            complete_id = _get(server.url + "/api/agents/history", auth)["last_event_id"]
            windows = {}
            for label in ("alone", "replaying"):
                probe = HealthProbe(server.url)
                replayer = Replayer(server.url, auth, complete_id) if label == "replaying" else None
                probe.start()
                if replayer is not None:
                    replayer.start()
                windows[label] = _window(scenario, sseload, duration, stream_url, headers, Path(tmp), server, label)
                probe.stopping.set()
                probe.join(5)
                if replayer is not None:
                    replayer.stopping.set()
                    replayer.join(10)
                windows[label]["healthz_ms"] = sorted(probe.ms)
                windows[label]["replayer"] = replayer
        finally:
            server.stop()
    alone, loaded = windows["alone"], windows["replaying"]
    replayer = loaded["replayer"]
    assert replayer is not None and replayed

    def p99(window: dict[str, Any]) -> float:
        return float(window["result"]["latency_ms"]["p99"])

    def worst(window: dict[str, Any]) -> float:
        return float(max(window["healthz_ms"] or [0.0]))

    rates = replayer.rates
    return {
        "scenario": scenario.name,
        "target": "ours",
        "goal": scenario.goal,
        "clients": scenario.clients,
        "replay_events": scenario.replay,
        "connected": loaded["result"]["connections"]["established"],
        "loss_pct": loaded["result"]["events"]["loss_pct"],
        "missing": alone["result"]["events"]["missing_ids"] + loaded["result"]["events"]["missing_ids"],
        "p50_ms_alone": alone["result"]["latency_ms"]["p50"],
        "p99_ms_alone": p99(alone),
        "p50_ms": loaded["result"]["latency_ms"]["p50"],
        "p99_ms": p99(loaded),
        "p99_ratio": round(p99(loaded) / max(0.001, p99(alone)), 2),
        "replays": len(replayer.counts),
        "replay_events_per_s_agent": round(statistics.median(rates["agent"])) if rates["agent"] else None,
        "replay_events_per_s_all": round(statistics.median(rates["all"])) if rates["all"] else None,
        "healthz_max_ms_alone": round(worst(alone), 1),
        "healthz_max_ms": round(worst(loaded), 1),
        "healthz_p99_ms": round(loaded["healthz_ms"][int(len(loaded["healthz_ms"]) * 0.99) - 1], 1)
        if loaded["healthz_ms"] else None,
        "server_cpu_pct_alone": round(alone["cpu"] * 100, 1),
        "server_cpu_pct": round(loaded["cpu"] * 100, 1),
        "host_steal_pct": round(max(alone["steal"], loaded["steal"]) * 100, 1),
        "others_cpu_pct": max(alone["others"], loaded["others"]),
    }


def run_cluster(scenario: Scenario, sseload: str, duration: float) -> dict[str, Any]:
    """Two nodes on one redis-server, the tick agent on node A; half the clients stream it
    from A, half from B (which reads it through Redis), both measured over the same window."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        redis = _redis_server(tmp)
        servers: list[ServerProcess] = []
        try:
            b = ServerProcess([sys.executable, "-m", "supervisor", "serve", "--port", "0", "--data-dir",
                               str(tmp / "b"), "--redis", redis.url, "--node", "B"], tmp / "server-b.log")
            servers.append(b)
            a, stream_a, headers_a = _start_ours(scenario, tmp, args=("--redis", redis.url, "--node", "A"), data="a")
            servers.append(a)
            token_b = json.loads((tmp / "b" / "server.json").read_text())["token"]
            headers_b = {"Last-Event-ID": headers_a["Last-Event-ID"], "Authorization": f"Bearer {token_b}"}
            stream_b = f"{b.url}/api/agents/ticker/stream"
            half = scenario.clients // 2
            loads = []
            for label, url, headers in (("a", stream_a, headers_a), ("b", stream_b, headers_b)):
                cmd = [sseload, "--url", url, "--clients", str(half), "--duration", str(duration),
                       "--ramp", str(scenario.ramp), "--warmup", str(scenario.warmup),
                       "--json", str(tmp / f"sseload-{label}.json"), "--quiet", "--wait-connect", "30",
                       "--expect-rate", str(scenario.rate)]
                for name, value in headers.items():
                    cmd += ["--header", f"{name}: {value}"]
                loads.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
            time.sleep(scenario.ramp + scenario.warmup)
            pids = {"a": a.proc.pid, "b": b.proc.pid, "redis": redis.pid}
            cpu_start = {k: _cpu_seconds(pid) for k, pid in pids.items()}
            t_start, ticks_start = time.monotonic(), _cpu_ticks()
            for load in loads:
                load.communicate(timeout=duration + 120)
            seconds = max(0.001, time.monotonic() - t_start)
            cpu = {k: round((_cpu_seconds(pid) - cpu_start[k]) / seconds * 100, 1) for k, pid in pids.items()}
            ticks_end = _cpu_ticks()
            steal = (ticks_end[0] - ticks_start[0]) / max(1, ticks_end[1] - ticks_start[1])
            results = {label: json.loads((tmp / f"sseload-{label}.json").read_text()) for label in ("a", "b")}
        finally:
            for server in servers:
                server.stop()
            redis.close()
    nodes = {}
    for label, result in results.items():
        events, latency, conns = result["events"], result["latency_ms"], result["connections"]
        nodes[label] = {"connected": conns["established"], "loss_pct": events["loss_pct"],
                        "missing": events["missing_ids"], "duplicates": events["duplicate_ids"],
                        "dropped": conns["normal_dropped_in_window"] + conns["normal_dropped_before_window"],
                        "events_per_s_per_client": events["per_client_per_sec"],
                        "p50_ms": latency["p50"], "p99_ms": latency["p99"], "max_ms": latency["max"]}
    return {"scenario": scenario.name, "target": "redis", "goal": scenario.goal, "clients": scenario.clients,
            "rate": scenario.rate, "nodes": nodes, "cpu_pct": cpu, "host_steal_pct": round(steal * 100, 1)}


def _cluster_summary(result: dict[str, Any]) -> str:
    parts = [f"{result['scenario']} [redis]:"]
    for label, node in result["nodes"].items():
        parts.append(f"node {label.upper()}: conn={node['connected']}/{result['clients'] // 2} loss={node['loss_pct']}% "
                     f"missing={node['missing']} dup={node['duplicates']} dropped={node['dropped']} "
                     f"p50={node['p50_ms']}ms p99={node['p99_ms']}ms;")
    cpu = result["cpu_pct"]
    parts.append(f"cpu A={cpu['a']}% B={cpu['b']}% redis={cpu['redis']}% steal={result['host_steal_pct']}%")
    return " ".join(parts)


def _replay_summary(result: dict[str, Any]) -> str:
    return (
        f"{result['scenario']} [ours]: conn={result['connected']}/{result['clients']} loss={result['loss_pct']}% "
        f"missing={result['missing']} p99 alone={result['p99_ms_alone']}ms with replay={result['p99_ms']}ms "
        f"(x{result['p99_ratio']}) replays={result['replays']} "
        f"events/s agent={result['replay_events_per_s_agent']} all={result['replay_events_per_s_all']} "
        f"healthz max alone={result['healthz_max_ms_alone']}ms with replay={result['healthz_max_ms']}ms "
        f"cpu={result['server_cpu_pct_alone']}%/{result['server_cpu_pct']}% steal={result['host_steal_pct']}% "
        f"others={result['others_cpu_pct']}%"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], help="default: all")
    parser.add_argument("--duration", type=float, default=15.0, help="measurement window, seconds")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario (and of the reference)")
    parser.add_argument("--reference", nargs="?", const="timer", choices=["timer", "pty", "both"],
                        help="also run fixed-rate scenarios against scripts/reference_sse_server.py, its "
                             "events from a timer (the default), from the tick agent under a PTY, or both")
    parser.add_argument("--sseload", default=os.environ.get("SSELOAD", str(DEFAULT_SSELOAD)))
    parser.add_argument("--json", help="write all results to this file")
    parser.add_argument("--durability", choices=["os", "fsync"], help="our server's durability setting")
    parser.add_argument("--base", type=Path,
                        help="another checkout of this project (the commit before a change): its server "
                             "runs alternately with ours, before each of ours, as target 'base'")
    parser.add_argument("--replay-events", type=int, help="events replay-250k replays (default 250,000)")
    parser.add_argument("--backend", choices=["embedded", "redis", "both"], default="embedded",
                        help="our server's event log: embedded (the default), the Redis backend on a"
                             " redis-server of the run's own, or both alternately")
    args = parser.parse_args()
    if args.durability:
        SERVER_ENV["AGENT_SUPERVISOR_DURABILITY"] = args.durability
    if args.base:
        if not (args.base / "supervisor" / "__main__.py").exists():
            raise SystemExit(f"not a checkout of this project: {args.base}")
        BASE_CHECKOUT.append(args.base.resolve())
    if not shutil.which(args.sseload) and not Path(args.sseload).exists():
        raise SystemExit(f"load client not found: {args.sseload} (pass --sseload or set SSELOAD)")
    names = args.scenarios or [name for name in SCENARIOS if name != "cluster-2x2500"]
    machine = f"{platform.node()} {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    print(f"# {machine}")
    results = []
    for name in names:
        scenario = SCENARIOS[name]
        if name == "cluster-2x2500":
            for _ in range(args.repeat):
                result = run_cluster(scenario, args.sseload, args.duration)
                results.append(result)
                print(_cluster_summary(result), flush=True)
            continue
        if scenario.replay:
            if args.replay_events:
                scenario = dataclasses.replace(scenario, replay=args.replay_events)
            for _ in range(args.repeat):
                result = run_replay(scenario, args.sseload, args.duration)
                results.append(result)
                print(_replay_summary(result), flush=True)
            continue
        if scenario.tui_rate:
            targets = ["ours", "ours-no-tui"]
        else:
            targets = {"embedded": ["ours"], "redis": ["redis"], "both": ["ours", "redis"]}[args.backend]
        if args.base:
            targets.insert(0, "base")
        if args.reference and scenario.rate and not scenario.slow:
            if args.reference in ("timer", "both"):
                targets.append("reference")
            if args.reference in ("pty", "both"):
                targets.append("reference-pty")
        for _ in range(args.repeat):
            for target in targets:  # alternating, so that both meet the same minutes of the host
                result = run(scenario, args.sseload, args.duration, target)
                results.append(result)
                print(_summary(result), flush=True)
        if args.repeat > 1:
            for target in targets:
                runs = [r for r in results if r["scenario"] == name and r["target"] == target]
                print(f"{name} [{target}] median of {len(runs)}: {_medians(runs)}", flush=True)
                quiet = [r for r in runs if r["host_steal_pct"] < QUIET_STEAL_PCT
                         and r.get("others_cpu_pct", 0) < QUIET_OTHERS_PCT]
                if quiet:
                    print(f"{name} [{target}] median of the {len(quiet)} quiet runs (steal < {QUIET_STEAL_PCT}%,"
                          f" others < {QUIET_OTHERS_PCT}%): "
                          f"{_medians(quiet)}", flush=True)
        if scenario.tui_rate:
            print(_tui_ratio([r for r in results if r["scenario"] == name]), flush=True)
    if args.json:
        record = {"machine": machine, "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "commit": _commit(ROOT), "base_commit": _commit(args.base) if args.base else None, "results": results}
        Path(args.json).write_text(json.dumps(record, indent=1))
    return 0


def _commit(checkout: Path) -> str | None:
    """The checkout's commit, ``+`` when it has uncommitted changes (what a record was run on)."""
    try:
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+" if dirty else "")


def _medians(runs: list[dict[str, Any]]) -> str:
    return (
        f"p50={statistics.median(r['p50_ms'] for r in runs):.2f}ms "
        f"p99={statistics.median(r['p99_ms'] for r in runs):.2f}ms "
        f"(p99 runs: {', '.join(str(r['p99_ms']) for r in runs)}) "
        f"cpu={statistics.median(r['server_cpu_pct'] for r in runs):.1f}% "
        f"steal={statistics.median(r['host_steal_pct'] for r in runs):.1f}%"
    )


def _tui_ratio(runs: list[dict[str, Any]]) -> str:
    """The p99 with the TUI agent over the p99 without it: of the medians, and of each pair of
    runs made one after the other (quiet pairs: both with steal under QUIET_STEAL_PCT)."""
    with_tui = [r for r in runs if r["target"] == "ours"]
    without = [r for r in runs if r["target"] == "ours-no-tui"]
    pairs = [a["p99_ms"] / b["p99_ms"] for a, b in zip(with_tui, without) if b["p99_ms"]]
    quiet = [a["p99_ms"] / b["p99_ms"] for a, b in zip(with_tui, without)
             if b["p99_ms"] and max(a["host_steal_pct"], b["host_steal_pct"]) < QUIET_STEAL_PCT]
    median_ratio = statistics.median(r["p99_ms"] for r in with_tui) / max(0.001, statistics.median(r["p99_ms"] for r in without))
    return (f"{runs[0]['scenario']}: p99 with the TUI agent / without = {median_ratio:.2f} (medians); "
            f"pairs {', '.join(f'{p:.2f}' for p in pairs)}; quiet pairs {', '.join(f'{p:.2f}' for p in quiet) or '-'}; "
            f"TUI agent {statistics.median(r['tui_bytes_per_s'] for r in with_tui) / 1e6:.2f} MB/s, "
            f"CPU {statistics.median(r['server_cpu_pct'] for r in with_tui):.0f}% vs "
            f"{statistics.median(r['server_cpu_pct'] for r in without):.0f}%, "
            f"screen worker {statistics.median(r['screen_worker_cpu_pct'] for r in with_tui):.0f}%, "
            f"machine busy {statistics.median(r['machine_busy_pct'] for r in with_tui):.0f}% vs "
            f"{statistics.median(r['machine_busy_pct'] for r in without):.0f}%")


def _summary(result: dict[str, Any]) -> str:
    return (
        f"{result['scenario']} [{result['target']}]: conn={result['connected']}/{result['clients']} "
        f"ev/s/client={result['events_per_s_per_client']} loss={result['loss_pct']}% "
        f"p50={result['p50_ms']}ms p99={result['p99_ms']}ms cpu={result['server_cpu_pct']}% "
        f"rss/client={result['server_rss_kb_per_client']}KB slow_dropped={result['slow_clients_dropped']} "
        f"rss_peak={result['server_rss_mb_peak']}MB (before {result['server_rss_mb_before']}MB) "
        f"steal={result['host_steal_pct']}% machine_busy={result['machine_busy_pct']}% others={result.get('others_cpu_pct')}%"
        + (f" tui={result['tui_bytes_per_s'] / 1e6:.2f}MB/s ({result['tui_screen']})"
           f" worker_cpu={result['screen_worker_cpu_pct']}%" if result.get("tui_screen") else "")
    )


if __name__ == "__main__":
    sys.exit(main())
