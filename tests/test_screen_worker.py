"""Screen workers: each screen's emulator in a process of its own (``supervisor.screen.worker``).

Faults and bounds, with real processes: a worker killed with SIGKILL (the agent runs on, the
screen comes back, the user is told), one that hangs (SIGSTOP: killed and replaced), screens
started and ended hundreds of times (no process, no descriptor left), a flood far over 1 MB/s
(the program is slowed down; the server's memory does not grow with it), and the mirror
against the emulator it copies. The agents run in this process's registry; waits are on
conditions (``gwait`` lets the hub run).
"""
from __future__ import annotations

import dataclasses
import os
import random
import signal
import sys
from collections.abc import Iterator
from typing import Any

import gevent
import pytest

from supervisor import events
from supervisor.config import Config
from supervisor.registry import Registry
from supervisor.screen import VirtualScreen
from supervisor.screen import live as live_module
from supervisor.screen.emulator import ScreenLine
from supervisor.screen.link import WorkerLink
from supervisor.screen.live import QUEUE_MAX, LiveScreen
from supervisor.screen.mirror import ScreenMirror, seed

from support.agents import history
from support.processes import children
from support.waiting import gwait

PY = sys.executable

#: Draws a title on the alternate screen, then a line for each line of input, until "q".
TUI = r"""
import sys
w = sys.stdout.write
w("\x1b[?1049h\x1b[H\x1b[2J\x1b[1;1H\x1b[1;35mtitle\x1b[0m\x1b[3;1Hready"); sys.stdout.flush()
n = 0
for line in sys.stdin:
    if line.strip() == "q":
        break
    n += 1
    w("\x1b[%d;1Hgot %s" % (4 + n, line.strip())); sys.stdout.flush()
w("\x1b[?1049l"); sys.stdout.flush()
"""

#: Redraws a 40-row screen as fast as it can, ``MB`` megabytes in all, then draws "end" and
#: waits for a line.
FLOOD = r"""
import sys
frame = b"".join(b"\x1b[%d;1H\x1b[3%dm%03d " % (r, r % 8, r) + b"x" * 70 for r in range(1, 41))
out = sys.stdout.buffer
out.write(b"\x1b[?1049h")
for _ in range({mb} * 1_000_000 // len(frame)):
    out.write(frame)
out.write(b"\x1b[0m\x1b[2J\x1b[1;1Hend"); out.flush()
sys.stdin.readline()
"""


@pytest.fixture
def registry(config: Config) -> Iterator[Registry]:
    registry = Registry(dataclasses.replace(config, screen_settle_s=0.2))
    try:
        yield registry
    finally:
        registry.shutdown(grace=1.0)


def _text(registry: Registry, name: str) -> list[str]:
    screen = registry.get(name).screen.current
    return screen.snapshot()["text"] if screen is not None else []


def _worker(agent: Any) -> int:
    """The pid of the agent's screen worker, once it has one."""
    pid: int = gwait(lambda: agent.screen.worker_pid, 10, "a screen worker")
    return pid


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def test_a_killed_worker_is_replaced_the_screen_comes_back_and_the_user_is_told(registry: Registry) -> None:
    """SIGKILL of the worker: the agent runs on, a new worker starts from the screen as it
    was (title and all), an ``error`` event says what happened, and what the program draws
    next shows on the screen."""
    agent = registry.create({"name": "tui", "command": [PY, "-c", TUI], "cols": 40, "rows": 10})
    gwait(lambda: _text(registry, "tui")[2:3] == ["ready"], 15, "the first screen")
    first = _worker(agent)
    os.kill(first, signal.SIGKILL)
    told = gwait(lambda: history(registry, "tui", events.ERROR), 10, "the user to be told")
    assert told[0].data["code"] == "screen_worker_failed" and told[0].data["reason"] == "killed by SIGKILL"
    assert "took over" in told[0].data["message"] and not told[0].data.get("screen_off")
    second = _worker(agent)
    assert second != first and not _alive(first)
    assert agent.state is not None and agent.state.value == "running"
    text = _text(registry, "tui")
    assert text[0] == "title" and text[2] == "ready"
    assert "\x1b[0;1;35mtitle" in agent.screen.current.snapshot()["ansi"][0]  # type: ignore[union-attr]
    agent.write("hello\n")
    gwait(lambda: _text(registry, "tui")[4:5] == ["got hello"], 10, "the next drawing on the new worker")
    assert agent.screen.restarts == 1
    agent.write("q\n")
    assert agent.wait(10)
    assert agent.screen.worker_pid is None and not _alive(second)


def test_a_worker_that_keeps_dying_turns_the_screen_off_and_the_output_becomes_lines(registry: Registry) -> None:
    """After MAX_RESTARTS replacements the screen is given up for the run, the user is told,
    and the program's output is read as lines (nothing vanishes)."""
    agent = registry.create({"name": "dying", "command": [PY, "-c", TUI], "cols": 40, "rows": 10})
    gwait(lambda: _text(registry, "dying")[2:3] == ["ready"], 15, "the first screen")
    for n in range(live_module.MAX_RESTARTS + 1):
        os.kill(_worker(agent), signal.SIGKILL)
        gwait(lambda: len(history(registry, "dying", events.ERROR)) == n + 1, 10, "the notice")  # noqa: B023
    last = history(registry, "dying", events.ERROR)[-1].data
    assert last["screen_off"] and "off for the rest of the run" in last["message"]
    assert agent.screen.current is None and agent.screen.worker_pid is None
    agent.write("after\n")
    gwait(lambda: any("got after" in e.data["line"] for e in history(registry, "dying", "log")), 10, "a line")
    agent.write("q\n")
    assert agent.wait(10)


@pytest.mark.slow
def test_a_hanging_worker_is_killed_and_replaced(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that reads nothing (SIGSTOP): the queue fills to its bound, the program's
    reader waits for HANG_S, then the worker is killed, replaced, and the user told; the
    flood goes on to its end on the new worker."""
    monkeypatch.setattr(live_module, "HANG_S", 0.5)
    agent = registry.create({"name": "hang", "command": [PY, "-c", FLOOD.format(mb=8)], "cols": 80, "rows": 40})
    os.kill(_worker(agent), signal.SIGSTOP)
    told = gwait(lambda: history(registry, "hang", events.ERROR), 15, "the hang to be noticed")
    assert told[0].data["reason"] == "killed by SIGKILL"
    gwait(lambda: _text(registry, "hang")[:1] == ["end"], 30, "the end of the flood")
    agent.stop(grace=1)


@pytest.mark.slow
def test_a_flood_is_slowed_down_and_the_servers_memory_stays_bounded(registry: Registry) -> None:
    """A program drawing as fast as it can (48 MB): at most QUEUE_MAX bytes ever wait for the
    worker, this process's memory grows by far less than the flood, and the screen shows the
    end of it."""
    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024

    base = rss()
    agent = registry.create({"name": "flood", "command": [PY, "-c", FLOOD.format(mb=48)], "cols": 80, "rows": 40})
    peak_rss = peak_queue = 0

    def sample() -> None:
        nonlocal peak_rss, peak_queue
        while True:
            peak_rss, peak_queue = max(peak_rss, rss()), max(peak_queue, agent.screen.worker_queued)
            gevent.sleep(0.01)

    sampler = gevent.spawn(sample)
    try:
        gwait(lambda: _text(registry, "flood")[:1] == ["end"], 120, "the end of the flood")
    finally:
        sampler.kill()
    assert 0 < peak_queue <= QUEUE_MAX + 65536, peak_queue
    assert peak_rss - base < 24 << 20, (peak_rss - base) >> 20
    assert history(registry, "flood", events.ERROR) == []
    agent.write("\n")
    assert agent.wait(10)


@pytest.mark.slow
def test_screens_started_and_ended_200_times_leave_no_process_and_no_descriptor() -> None:
    """200 runs with a screen (eight at a time): every worker ends with its run, and the
    descriptors are those of before."""
    def one(run: int) -> None:
        calls: list[tuple[dict[str, Any], list[ScreenLine]]] = []
        live = LiveScreen("on", lambda data, lines: calls.append((data, lines)), worker=True)
        live.start_run(run, 20, 4)
        live.feed(b"run %d" % run)
        live.finish()
        assert calls[-1][0]["text"][0] == f"run {run}", calls

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def kids() -> set[int]:  # this process's children (other tests' servers may be among them)
        return {pid for pid, _, _ in children(os.getpid())}

    one(0)
    before, kids_before = fds(), kids()
    started: set[int] = set()
    real_start = WorkerLink.__init__

    def counting_start(self: WorkerLink, *args: Any, **kwargs: Any) -> None:
        real_start(self, *args, **kwargs)
        started.add(self.pid)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WorkerLink, "__init__", counting_start)
        for batch in range(25):
            gevent.joinall([gevent.spawn(one, batch * 8 + i) for i in range(8)], raise_error=True)
    assert len(started) == 200
    assert fds() == before
    assert kids() - kids_before == set()  # every worker ended and was reaped with its run
    assert not [pid for pid in started if os.path.exists(f"/proc/{pid}")]


def test_the_mirror_follows_the_emulator_update_by_update() -> None:
    """Applying the emulator's changes as a worker sends them gives the emulator's snapshot,
    lines and changes at every step (random redraws, scrolls, a resize); the seed of a mirror
    draws the same text on a blank screen."""
    rng = random.Random(7)
    screen, mirror = VirtualScreen(30, 8), ScreenMirror(30, 8)
    sent = 0
    for step in range(300):
        if step == 150:
            screen.resize(24, 6)
        choice = rng.random()
        if choice < 0.5:
            data = b"\x1b[%d;%dH\x1b[3%dm%s" % (rng.randint(1, 8), rng.randint(1, 30), rng.randint(0, 7),
                                               rng.choice([b"abc", "日本".encode(), b"x" * 40]))
        elif choice < 0.7:
            data = b"line %d\r\n" % step
        else:
            data = b"\x1b[%dM" % rng.randint(1, 3)
        screen.feed(data)
        changes = screen.changes(sent)
        sent = changes["seq"]
        mirror.apply({"gen": 0, **{k: changes[k] for k in ("cols", "rows", "cursor", "alternate", "modes")},
                      "changed": [[c["row"], c["text"], c["ansi"], c["wrapped"]] for c in changes["changed"]]})
        ours, theirs = mirror.snapshot(), screen.snapshot()
        assert {k: v for k, v in ours.items() if k != "seq"} == {k: v for k, v in theirs.items() if k != "seq"}
        assert mirror.lines() == screen.lines()
    copy = VirtualScreen(mirror.cols, mirror.rows)
    copy.feed(seed(mirror))
    assert copy.snapshot()["text"] == mirror.snapshot()["text"]
    assert copy.snapshot()["ansi"] == mirror.snapshot()["ansi"]
