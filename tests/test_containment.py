"""An agent's processes are everything it started: stop ends them all, leftovers are ended (or
kept), a crashed server's survivors are ended at the next start, and the figures cover the tree.

Every test runs in both the cgroup and the subreaper mode, with real processes under a real
PTY; the crash test uses the real server in a subprocess. Where the machine has no writable
cgroup2 hierarchy the cgroup mode is skipped, saying why. The real codex's daemon is
tests/test_codex_offline.py's.

Every test also fails if a process of one of its runs is left running anywhere on the machine
(conftest's leak check sees only this process's children; a daemon of an agent is init's). The
check knows a test's runs by their mark (see :mod:`support.containment`): the tests keep their
data directories directly under ``tmp_path``, so it never sees the runs of a test in another
pytest-xdist worker.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from api import close_app, create_app
from supervisor.config import load_config
from supervisor.containment import procfs, server_id_for
from supervisor.containment.cgroup import PARENT_PREFIX, Hierarchy, RunCgroup
from supervisor.containment.procfs import ProcStat
from supervisor.containment.usage import Figures
from supervisor.registry import Registry
from supervisor.store import Processes

from support.agents import history
from support.cli import cli
from support.containment import MODES, marked_processes, need, running, server_ids_under
from support.processes import Server, python_agent
from support.waiting import gwait, wait_for

GRACE = 0.5  # short: the tests that wait it out wait it in full


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    need(request.param)
    return str(request.param)


def stat_of(pid: int) -> ProcStat:
    stat = procfs.read_stat(pid)
    assert stat is not None, f"no process {pid}"
    return stat


@pytest.fixture(autouse=True)
def nothing_left_running(tmp_path: Path) -> Iterator[None]:
    """Fail a test that leaves any process of its runs behind, wherever it went. Kills what it
    finds."""
    yield
    ids = server_ids_under(tmp_path)
    try:
        wait_for(lambda: not marked_processes(ids), 5, 0.05, "the runs' processes to end")
    except AssertionError:
        stray = marked_processes(ids)
        for pid in stray:
            kill_quietly(pid)
        pytest.fail(f"processes of runs left running: {stray}")


def make_registry(tmp_path: Path, mode: str, **settings: Any) -> Registry:
    config = load_config(environ={"HOME": str(tmp_path)}, data_dir=str(tmp_path / "data"),
                         stop_grace_s=GRACE, containment=mode, **settings)
    return Registry(config)


@pytest.fixture
def reg(tmp_path: Path, mode: str) -> Iterator[Registry]:
    registry = make_registry(tmp_path, mode)
    assert registry.containment.mode == mode
    try:
        yield registry
    finally:
        registry.shutdown(grace=1.0)


def processes(registry: Registry, name: str) -> Processes:
    """What the agent's record says of its processes (what the API shows)."""
    found = registry.get(name).record().processes
    assert found is not None
    return found


def pid_from(path: Path, timeout: float = 10.0) -> int:
    return int(gwait(lambda: path.exists() and path.read_text().strip(), timeout, f"{path.name}"))


def pids_from(path: Path, timeout: float = 10.0) -> tuple[int, int]:
    """The two pids a program wrote into ``path``."""
    def written() -> list[str]:
        return path.read_text().split() if path.exists() else []

    first, second = gwait(written, timeout, path.name)
    return int(first), int(second)


def last(registry: Registry, name: str, type: str, **match: Any) -> dict[str, Any]:
    found = [e.data for e in history(registry, name, type) if all(e.data.get(k) == v for k, v in match.items())]
    assert found, f"no {type} event {match} for {name}"
    return found[-1]


def kill_quietly(pid: int) -> None:
    """Clean up after a failed test: kill ``pid`` if it still runs, and let libev reap it if
    it was ours (the leak check would see a zombie child otherwise)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    gwait(lambda: (s := procfs.read_stat(pid)) is None or s.ppid != os.getpid(), 5, f"{pid} to be reaped")


def zombie_children() -> list[int]:
    return [pid for pid in procfs.all_pids()
            if (s := procfs.read_stat(pid)) is not None and s.ppid == os.getpid() and not s.running]


# Programs the agents run. Each writes the pids the test needs into files named on its command line.

SETSID_CHILD = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    open(sys.argv[1], "w").write(str(os.getpid()))
    time.sleep(300)
    os._exit(0)
print("parent running", flush=True)
time.sleep(300)
"""

# A daemon the classic way: fork, setsid, fork again, the middle process exits. The daemon
# ignores SIGTERM (and says it got one).
DOUBLE_FORK_DAEMON = """
import os, signal, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        def got_term(*_):
            open(sys.argv[2], "w").write("term")
        signal.signal(signal.SIGTERM, got_term)
        open(sys.argv[1], "w").write(str(os.getpid()))
        while True:
            time.sleep(1)
    os._exit(0)
time.sleep(300)
"""

# The main process starts a daemon and exits 0 at once: the daemon is a leftover.
LEAVES_A_DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(sys.argv[1], "w").write(str(os.getpid()))
        time.sleep(300)
    os._exit(0)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
"""

# Ignores SIGHUP (and so survives its terminal going away), with a child that does the same.
IGNORES_SIGHUP = """
import os, signal, sys, time
signal.signal(signal.SIGHUP, signal.SIG_IGN)
child = os.fork()
if child == 0:
    time.sleep(300)
    os._exit(0)
open(sys.argv[1], "w").write(f"{os.getpid()} {child}")
print("running", flush=True)
time.sleep(300)
"""


# --------------------------------------------------------------------------- stop


def test_setsid_child_is_stopped_completely(reg: Registry, tmp_path: Path, mode: str) -> None:
    """A child that calls setsid() (out of the process group) is ended by stop too, and the
    complete event counts both processes; the agent's record says which containment is in force."""
    pidfile = tmp_path / "setsid.pid"
    agent = reg.create({"name": "esc", "command": python_agent(SETSID_CHILD) + [str(pidfile)]})
    escaped = pid_from(pidfile)
    assert stat_of(escaped).pgid != agent.pid, "the child left the agent's process group"
    assert processes(reg, "esc").mode == mode
    reg.stop("esc", wait=True)
    assert agent.state == "exited"
    gwait(lambda: not running(escaped), 5, "the setsid child to end")
    assert last(reg, "esc", "complete")["ended"] == 2


def test_double_forked_daemon_ignoring_sigterm_is_killed_after_the_grace(reg: Registry, tmp_path: Path) -> None:
    """A double-forked daemon that ignores SIGTERM gets SIGTERM first and SIGKILL when the grace
    period is over."""
    pidfile, termfile = tmp_path / "daemon.pid", tmp_path / "daemon.term"
    agent = reg.create({"name": "daemon", "command": python_agent(DOUBLE_FORK_DAEMON) + [str(pidfile), str(termfile)],
                        "stop_grace_s": GRACE})
    daemon = pid_from(pidfile)
    assert stat_of(daemon).ppid != agent.pid, "the daemon is not a child of the agent"
    started = time.monotonic()
    reg.stop("daemon", wait=True)
    took = time.monotonic() - started
    assert not running(daemon)
    assert termfile.read_text() == "term", "the daemon got SIGTERM before it was killed"
    assert took >= GRACE * 0.9, f"SIGKILL came before the grace period was over ({took:.2f} s)"
    assert last(reg, "daemon", "complete")["ended"] == 2


def test_without_cgroup_kill_each_member_gets_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel has no cgroup.kill (before Linux 5.14), SIGKILL goes to each member
    of the run's cgroup (the cgroup mode only)."""
    need("cgroup")
    monkeypatch.setattr(RunCgroup, "kill", lambda self: False)
    reg = make_registry(tmp_path, "cgroup")
    try:
        pidfile, termfile = tmp_path / "daemon.pid", tmp_path / "daemon.term"
        reg.create({"name": "old-kernel",
                    "command": python_agent(DOUBLE_FORK_DAEMON) + [str(pidfile), str(termfile)]})
        daemon = pid_from(pidfile)
        reg.stop("old-kernel", wait=True)
        assert not running(daemon) and termfile.read_text() == "term"
        assert last(reg, "old-kernel", "complete")["ended"] == 2
    finally:
        reg.shutdown(grace=1.0)


# Orphans come and go around the agent (a daemon forking short-lived workers) while the
# agent's main process waits for a child of its own and exits with that child's code + 10.
ORPHANS_AROUND = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    for i in range(20):
        if os.fork() == 0:
            time.sleep(0.05 + i * 0.01)
            os._exit(0)
    os._exit(0)
child = os.fork()
if child == 0:
    time.sleep(0.3)
    os._exit(7)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status) + 10)
"""


def test_reaping_orphans_takes_no_status_that_is_not_ours(reg: Registry) -> None:
    """Twenty orphans handed to the server and reaped by it while the agent waits for its own
    child: the agent still gets its child's status (7), the server its agent's (17), and no
    zombie stays."""
    agent = reg.create({"name": "waiter", "command": python_agent(ORPHANS_AROUND)})
    assert agent.wait(15)
    assert agent.exit_code == 17, (agent.exit_code, agent.signal)
    gwait(lambda: not zombie_children(), 5, "no zombie child")


# --------------------------------------------------------------------------- leftovers


def test_leftover_after_a_normal_exit_is_ended(reg: Registry, tmp_path: Path) -> None:
    """When the main process exits by itself, what it left running is ended (leftovers = kill,
    the default), and the exited and complete events say how many."""
    pidfile = tmp_path / "left.pid"
    agent = reg.create({"name": "leaver", "command": python_agent(LEAVES_A_DAEMON) + [str(pidfile)]})
    assert agent.wait(15)
    daemon = int(pidfile.read_text())
    assert not running(daemon)
    assert agent.exit_code == 0
    done = last(reg, "leaver", "complete")
    assert (done["ended"], done["kept"]) == (1, 0)
    assert last(reg, "leaver", "state", state="exited")["ended"] == 1


def test_leftover_is_kept_with_leftovers_keep(reg: Registry, tmp_path: Path) -> None:
    """With leftovers = "keep" the daemon outlives the agent; it is counted, shown in the
    figures, and a stop of the (exited) agent then ends it."""
    pidfile = tmp_path / "kept.pid"
    agent = reg.create({"name": "keeper", "command": python_agent(LEAVES_A_DAEMON) + [str(pidfile)],
                        "leftovers": "keep"})
    try:
        assert agent.wait(15)
        daemon = int(pidfile.read_text())
        assert running(daemon), "the daemon was kept"
        done = last(reg, "keeper", "complete")
        assert (done["ended"], done["kept"]) == (0, 1)
        kept = processes(reg, "keeper")
        assert kept.leftovers == "keep" and kept.live_run is None, "an ended run is not recovered"
        assert kept.usage is not None and kept.usage.processes == 1 and kept.usage.rss_bytes > 0, kept
        reg.stop("keeper", wait=True)
        gwait(lambda: not running(daemon), 5, "the kept daemon to end on stop")
        assert processes(reg, "keeper").ended == 1
    finally:
        if pidfile.exists():
            kill_quietly(int(pidfile.read_text()))


@pytest.mark.slow
def test_cli_stop_of_an_exited_agent_ends_what_it_kept(server: Server, tmp_path: Path) -> None:
    """``agent-supervisor stop`` of an agent whose run has ended but kept a daemon (leftovers =
    "keep") ends the daemon, waits for it and says so; the agent shows no figures after that."""
    pidfile = tmp_path / "kept.pid"
    server.create(name="cli-keeper", command=python_agent(LEAVES_A_DAEMON) + [str(pidfile)], leftovers="keep")

    def kept() -> dict[str, Any] | None:
        agent: dict[str, Any] = server.get("/api/agents/cli-keeper")
        return agent if agent["state"] == "exited" and agent["usage"] else None

    agent = wait_for(kept, 15, 0.05, "the run to end, its daemon kept")
    assert agent is not None and agent["kept"] == 1 and agent["usage"]["processes"] == 1, agent
    daemon = int(pidfile.read_text())
    try:
        result = cli("stop", "cli-keeper", "--grace", "1", server=server)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "cli-keeper: exited; ended 1 processes its last run left"
        assert not running(daemon)
        after = server.get("/api/agents/cli-keeper")
        assert after["usage"] is None and (after["ended"], after["kept"]) == (1, 0), after
    finally:
        kill_quietly(daemon)


# --------------------------------------------------------------------------- after a crash


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_survivor_of_a_sigkilled_server_is_ended_at_restart(
        make_server: Callable[..., Server], tmp_path: Path, mode: str) -> None:
    """An agent that ignores SIGHUP outlives a SIGKILL of the server; the next server on the
    same data directory ends it (and its child), the lost event says how many, and creating
    the name again runs one copy only."""
    data = tmp_path / "data"
    env = {"AGENT_SUPERVISOR_CONTAINMENT": mode}
    server = make_server(data_dir=data, env=env)
    pidfile = tmp_path / "survivor.pids"
    server.create(name="survivor", command=python_agent(IGNORES_SIGHUP) + [str(pidfile)])
    server.wait_state("survivor", "running")
    main, child = pids_from(pidfile)
    # Its "running" line is out: SIGKILL the server before it, and that print fails on the
    # hung-up terminal and ends the main process itself (one survivor, not two).
    wait_for(lambda: any(e["type"] == "log" and e["data"]["line"] == "running"
                         for e in server.get("/api/agents/survivor/events?after=0")["events"]),
             10, 0.02, "the agent's running line")
    assert server.get("/api/agents/survivor")["containment"]["mode"] == mode
    server.stop(signal.SIGKILL)
    assert running(main) and running(child), "the agent outlived the server"
    try:
        again = make_server(data_dir=data, env=env)
        agent = again.wait_state("survivor", "lost")
        assert not running(main) and not running(child), "the restart ended the survivors"
        lost = [e for e in again.get("/api/agents/survivor/events?after=0")["events"]
                if e["type"] == "state" and e["data"]["state"] == "lost"]
        assert lost[-1]["data"]["ended"] == 2, lost[-1]
        assert agent["ended"] == 2
        # The name again: one copy only (the old one is gone, the new one runs).
        pidfile.unlink()
        again.create(name="survivor", command=python_agent(IGNORES_SIGHUP) + [str(pidfile)])
        new_main, _ = pids_from(pidfile)
        marked = marked_processes({server_id_for(data)})
        assert new_main in marked and main not in marked and len(marked) == 2, marked
        assert cli("stop", "survivor", "--grace", "1", server=again).returncode == 0
    finally:
        for pid in (main, child):
            kill_quietly(pid)


def test_stop_on_a_lost_agent_ends_what_is_still_there(tmp_path: Path, mode: str) -> None:
    """With leftovers = "keep", the next server ends only the lost run's main process; the rest
    keeps running until a stop of the lost agent ends it (lost -> exited)."""
    pidfile = tmp_path / "kept.pids"
    first = make_registry(tmp_path, mode)
    first.create({"name": "half", "command": python_agent(IGNORES_SIGHUP) + [str(pidfile)], "leftovers": "keep"})
    main, child = pids_from(pidfile)
    crash(first)
    second = make_registry(tmp_path, mode)
    try:
        agent = second.get("half")
        assert agent.state == "lost"
        lost = last(second, "half", "state", state="lost")
        assert (lost["ended"], lost["kept"]) == (1, 1)
        gwait(lambda: not running(main), 5, "the lost run's main process to end")
        assert running(child), "its other process was kept"
        assert processes(second, "half").live_run is not None, "a second crash would still find it"
        second.stop("half", wait=True)
        assert agent.state == "exited" and agent.reason.startswith("stopped: ended 1")
        gwait(lambda: not running(child), 5, "the kept process to end on stop")
    finally:
        kill_quietly(main)
        kill_quietly(child)
        second.shutdown(grace=1.0)


def crash(registry: Registry) -> None:
    """Leave a registry as a SIGKILL would: agents running, nothing stopped, history flushed.
    What is left of it in this process reports nothing more: its agents do not see their
    runs end, and its sampler stops."""
    registry.eventlog.flush()
    for agent in registry.list():
        process = agent._process
        if process is not None:
            process._on_exit = lambda status: None
    registry.sampler.stop()
    registry.containment.close()
    if registry._lock is not None:  # a dead process holds no lock: the kernel lets go of it
        registry._lock.release()


def test_a_reused_pid_is_left_alone(tmp_path: Path, mode: str) -> None:
    """A record whose pid now belongs to an unrelated process (same pid, another start time)
    ends nothing: the process lives, and the lost event says 0 were ended."""
    first = make_registry(tmp_path, mode)
    agent = first.create({"name": "old", "command": ["true"]})
    assert agent.wait(10)
    first.shutdown(grace=1.0)
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        path = tmp_path / "data" / "agents" / "old" / "agent.json"
        record = json.loads(path.read_text())
        start = stat_of(unrelated.pid).start
        # What a server that died while "old" ran would have recorded, but with our pid in it.
        record["state"] = "running"
        record["pid"] = unrelated.pid
        record["processes"]["live_run"] = {
            "mode": mode, "mark": f"{server_id_for(tmp_path / 'data')}:old:1:0badf00d",
            "boot_id": procfs.boot_id(), "main": [unrelated.pid, start - 1],
            "members": [[unrelated.pid, start + 7]], "started_at": time.time() - 5,
        }
        path.write_text(json.dumps(record))
        second = make_registry(tmp_path, mode)
        try:
            assert second.get("old").state == "lost"
            assert last(second, "old", "state", state="lost")["ended"] == 0
            assert unrelated.poll() is None and running(unrelated.pid)
        finally:
            second.shutdown(grace=1.0)
    finally:
        unrelated.kill()
        unrelated.wait(5)


# --------------------------------------------------------------------------- figures


def usage_of(registry: Registry, name: str, check: Callable[[Figures], bool], timeout: float,
             what: str) -> Figures:
    seen: list[Figures | None] = []

    def ok() -> Figures | None:
        usage = processes(registry, name).usage
        seen.append(usage)
        return usage if usage is not None and check(usage) else None

    try:
        found = gwait(ok, timeout, what)
    except AssertionError:
        raise AssertionError(f"{what}: last figures {seen[-3:]}") from None
    assert found is not None
    return found


@pytest.mark.slow
def test_a_busy_loop_shows_about_100_percent_cpu(reg: Registry, tmp_path: Path) -> None:
    """A child spinning on a core shows about 100%. The band is generous, and on a machine so
    busy that the spinner gets much less than a core, the figure must match what it got (the
    test's own reading of the spinner's CPU time)."""
    pidfile = tmp_path / "spin.pid"
    spin = f"import os; open({str(pidfile)!r}, 'w').write(str(os.getpid()))\nwhile True: pass"
    reg.create({"name": "spin", "command": ["sh", "-c", f"{sys.executable} -c \"{spin}\" & wait"]})
    spinner = pid_from(pidfile)
    readings: list[tuple[float, int]] = []

    def share() -> float | None:
        """The spinner's CPU over the last 3 s, read by the test itself."""
        stat = procfs.read_stat(spinner)
        if stat is None:
            return None
        now = time.monotonic()
        readings.append((now, stat.cpu_ticks))
        while len(readings) > 2 and now - readings[1][0] >= 3.0:
            readings.pop(0)
        (then, before), (_, after) = readings[0], readings[-1]
        return (after - before) / procfs.CLOCK_TICKS / (now - then) * 100 if now - then >= 2.5 else None

    def about_100(usage: Figures) -> bool:
        got, real = usage.cpu_percent, share()
        if got is None:
            return False
        return 60 <= got <= 140 or (real is not None and real < 75 and abs(got - real) <= 25)

    usage = usage_of(reg, "spin", about_100, 30, "about 100% CPU")
    assert usage.processes == 2
    reg.stop("spin", wait=True)


@pytest.mark.slow
def test_a_child_holding_200_mb_shows_about_200_mb(reg: Registry, tmp_path: Path) -> None:
    """A child that holds 200 MB (touched, so resident) shows about 200 MB of RSS for the tree."""
    ready = tmp_path / "ready"
    code = f"import time; b = b'x' * (200 << 20); open({str(ready)!r}, 'w').close(); time.sleep(300)"
    reg.create({"name": "heavy", "command": ["sh", "-c", f"{sys.executable} -c \"{code}\" & wait"]})
    gwait(ready.exists, 15, "the allocation")
    mb = 1 << 20
    usage = usage_of(reg, "heavy", lambda u: 195 * mb <= u.rss_bytes <= 280 * mb, 10, "about 200 MB")
    assert usage.processes == 2
    reg.stop("heavy", wait=True)


def test_a_tree_of_5_processes_shows_5_in_the_api_list_and_stats(
        make_server: Callable[..., Server], mode: str) -> None:
    """A shell with four children is 5 processes: in GET /api/agents, in `list` (CPU, MEM and
    PROCS columns) and in /api/sse/stats; the figures go away when it stops."""
    server = make_server(env={"AGENT_SUPERVISOR_CONTAINMENT": mode})
    server.create(name="five", command=["sh", "-c", "sleep 60 & sleep 60 & sleep 60 & sleep 60 & wait"])

    def five() -> dict[str, Any] | None:
        agent: dict[str, Any] = server.get("/api/agents")["agents"][0]
        return agent if agent["usage"] and agent["usage"]["processes"] == 5 else None

    agent = wait_for(five, 15, 0.05, "5 processes in the figures")
    assert agent is not None
    assert agent["usage"]["uptime_s"] >= 0 and agent["usage"]["rss_bytes"] > 0
    assert agent["containment"]["mode"] == mode
    table = cli("list", server=server).stdout.splitlines()
    head = table[0].split()
    assert head[-3:] == ["CPU", "MEM", "PROCS"], table[0]
    assert table[1].split()[0] == "five" and table[1].split()[-1] == "5", table
    stats = server.get("/api/sse/stats")
    assert stats["usage"]["five"]["processes"] == 5
    assert stats["containment"]["mode"] == mode and stats["containment"]["sampler"]["samples"] >= 1
    assert cli("stop", "five", "--grace", "1", server=server).returncode == 0
    assert server.get("/api/agents/five")["usage"] is None


# --------------------------------------------------------------------------- the sampler


def live_samplers() -> int:
    """Greenlets of any sampler that are still alive in this process."""
    import gc

    return sum(1 for obj in gc.get_objects()
               if isinstance(obj, gevent.Greenlet) and not obj.dead
               and getattr(getattr(obj, "_run", None), "__qualname__", "") == "Sampler._run")


def test_apps_and_registries_leave_no_sampler_or_cgroup_behind(tmp_path: Path, mode: str) -> None:
    """The registry starts its sampler and its shutdown stops it: ten apps made and closed one
    after another (the server's way), and ten registries shut down, leave no sampler greenlet
    running, no parent cgroup, and the server no subreaper."""
    from supervisor.containment import subreaper

    before = live_samplers()
    was_reaper = subreaper.is_subreaper()
    for i in range(10):
        config = load_config(environ={"HOME": str(tmp_path)}, data_dir=str(tmp_path / f"app{i}"),
                             containment=mode, stop_grace_s=GRACE)
        app = create_app(config)
        registry = app.extensions["agent_supervisor"].registry
        assert registry.sampler.running
        registry.create({"name": "one", "command": ["sleep", "30"]})
        sampler = registry.sampler
        gwait(lambda: sampler.cost.samples >= 1, 5, "a sample")  # noqa: B023 - used at once
        close_app(app, grace=1.0)
        assert not registry.sampler.running
        registry = make_registry(tmp_path / f"reg{i}", mode)
        assert registry.sampler.running
        registry.shutdown(grace=1.0)
        assert not registry.sampler.running
    assert live_samplers() == before
    assert subreaper.is_subreaper() == was_reaper
    if mode == "cgroup":
        mine = {PARENT_PREFIX + server_id_for(tmp_path / f"app{i}") for i in range(10)}
        assert not mine & {os.path.basename(p) for p in cgroup_parents()}


# --------------------------------------------------------------------------- churn


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_200_runs_leave_no_zombie_no_stray_cgroup_and_no_fd_growth(reg: Registry, tmp_path: Path) -> None:
    """200 runs one after another, each leaving a process behind that is then ended, leave no
    zombie, no run cgroup and no more open files than after the first."""
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    # A sleep that ignores SIGHUP (inherited from the shell) outlives the shell and its terminal.
    leave_one = "trap \"\" HUP; sleep 60 </dev/null >/dev/null 2>&1 & echo started"

    def run(i: int) -> None:
        agent = reg.create({"name": f"churn-{i % 5}", "command": ["sh", "-c", leave_one]})
        assert agent.wait(20)
        assert agent.custody.ended == 1, (i, agent.custody.ended)

    run(0)
    before = fds()
    for i in range(1, 200):
        run(i)
    gwait(lambda: fds() <= before + 2, 5, "no fd growth")
    assert not zombie_children()
    assert not marked_processes({server_id_for(tmp_path / "data")})
    if reg.containment.mode == "cgroup":
        parent = next(p for p in cgroup_parents() if p.endswith(server_id_for(reg.config.data_dir)))
        gwait(lambda: not [d for d in os.listdir(parent) if os.path.isdir(os.path.join(parent, d))], 5,
              "no run cgroup left")


def cgroup_parents() -> list[str]:
    hierarchy = Hierarchy.find()
    own = hierarchy.directory(hierarchy.own)
    return [os.path.join(own, d) for d in os.listdir(own) if d.startswith(PARENT_PREFIX)]
