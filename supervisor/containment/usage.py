"""What a run costs, for its whole process tree: CPU over the last seconds, memory, processes.

CPU is a rate, so it needs two readings of a counter that only grows: the cgroup's
``usage_usec`` where there is one (it also counts processes that have exited), else the sum of
utime + stime over the tree, kept per process so that a process that exits does not make the
sum go down. Memory is the sum of the members' resident set sizes (what ``ps``, ``top`` and
``pm2 monit`` show; shared pages count once per process). The cgroup v2 memory controller is
not used even where it is enabled: ``memory.current`` counts the page cache too, a different
figure under the same column.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from . import procfs
from .procfs import Identity, ProcStat

#: CPU percentages are averaged over about this many seconds.
CPU_WINDOW_S = 3.0


@dataclass(frozen=True, slots=True)
class Figures:
    """What a run's processes cost at one moment (what the API and ``list`` show)."""

    cpu_percent: float | None  # over the last CPU_WINDOW_S, 100 being one core; None before two readings
    rss_bytes: int
    processes: int
    uptime_s: float


class Usage:
    """The latest figures of one run, from readings the sampler hands in."""

    def __init__(self) -> None:
        self._cpu: deque[tuple[float, float]] = deque()  # (monotonic time, CPU seconds so far)
        self.rss_bytes = 0
        self.processes = 0
        self.sampled_at: float | None = None
        self._ticks: dict[Identity, int] = {}  # per-process CPU ticks at the last reading
        self._tree_ticks = 0  # CPU ticks of the tree so far, by per-process deltas

    def add_tree(self, members: list[ProcStat], now: float) -> None:
        """A reading from the members' own counters (no cgroup)."""
        ticks = {}
        for stat in members:
            identity = stat.identity
            ticks[identity] = stat.cpu_ticks
            self._tree_ticks += max(0, stat.cpu_ticks - self._ticks.get(identity, 0))
        self._ticks = ticks
        self._add(now, self._tree_ticks / procfs.CLOCK_TICKS, members)

    def add_cgroup(self, members: list[ProcStat], cpu_usec: int | None, now: float) -> None:
        """A reading with the cgroup's CPU counter (falls back to the members' if it has none)."""
        if cpu_usec is None:
            self.add_tree(members, now)
        else:
            self._add(now, cpu_usec / 1e6, members)

    def _add(self, now: float, cpu_seconds: float, members: list[ProcStat]) -> None:
        self._cpu.append((now, cpu_seconds))
        while len(self._cpu) > 2 and now - self._cpu[1][0] >= CPU_WINDOW_S:
            self._cpu.popleft()
        self.rss_bytes = sum(stat.rss_bytes for stat in members)
        self.processes = len(members)
        self.sampled_at = time.time()

    @property
    def cpu_percent(self) -> float | None:
        """CPU over the window, 100 being one core busy; None until two readings exist."""
        if len(self._cpu) < 2:
            return None
        (then, before), (now, after) = self._cpu[0], self._cpu[-1]
        if now <= then:
            return None
        return max(0.0, (after - before) / (now - then) * 100.0)

    def figures(self, started_at: float) -> Figures:
        cpu = self.cpu_percent
        return Figures(
            cpu_percent=None if cpu is None else round(cpu, 1),
            rss_bytes=self.rss_bytes,
            processes=self.processes,
            uptime_s=round(max(0.0, time.time() - started_at), 1),
        )
