"""Every process of one run, in each mode: how it is marked at the start, found, ended, released.

A :class:`RunScope` is created before the fork, hands the child its environment mark and (in
cgroup mode) the function that joins its cgroup before exec, learns the main process's
identity after the fork, and from then on answers one question for the rest of the
supervisor: which processes are this run's now? Ending, counting and sampling are built on
that answer, the same way in every mode:

- ``cgroup``: members are the run cgroup's ``cgroup.procs``; SIGKILL is ``cgroup.kill``.
- ``subreaper``: members are the main process and what descends from it, plus orphans
  reparented to the server that carry the run's mark or were seen in the run before.
- ``group``: members are the main process's process group (what stop always signalled).

Ending is systemd's ``KillMode=control-group``: SIGTERM and SIGCONT to every member, again to
members that appeared meanwhile until a pass finds none new, SIGKILL to whatever is left when
the grace period is over, then wait until the kernel has finished them. Every signal goes to
a process checked to be a member through a pidfd (see :mod:`.procfs`).
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gevent
import gevent.lock

from . import procfs, subreaper
from .cgroup import RunCgroup
from .procfs import Identity, ProcStat
from .record import RunRecord
from .usage import Usage

log = logging.getLogger(__name__)

#: Signal passes over a run that keeps forking before giving up on finding everything new.
MAX_PASSES = 8
#: After SIGKILL, how long to wait for the kernel to finish the processes off.
KILL_WAIT_S = 5.0
#: After the members are gone, how long to wait for libev to reap our own zombies among them.
REAP_WAIT_S = 1.0
#: Most identities a tree-mode record keeps (for crash recovery; the mark finds the rest).
RECORD_MEMBERS = 256

Which = Callable[[ProcStat], bool]


@dataclass
class Snapshot:
    """One scan of the process table, shared by every tree-mode scope during one refresh."""

    stats: list[ProcStat]
    orphans: dict[str, list[ProcStat]] = field(default_factory=dict)  # run mark -> our orphans

    def __post_init__(self) -> None:
        self.by_pid = {stat.pid: stat for stat in self.stats}
        self.children = procfs.children_index(self.stats)

    def find(self, identity: Identity) -> ProcStat | None:
        stat = self.by_pid.get(identity.pid)
        return stat if stat is not None and stat.start == identity.start else None


class RunScope:
    """The processes of one run. Methods run in greenlets of one hub; ending blocks only the
    calling greenlet."""

    mode: ClassVar[str] = ""

    def __init__(self, mark: str, *, leftovers: str = "kill", grace_s: float = 5.0,
                 main: Identity | None = None, started_at: float | None = None) -> None:
        self.mark = mark
        self.leftovers = leftovers
        self.grace_s = grace_s
        self.main = main
        self.started_at = time.time() if started_at is None else started_at
        self.usage = Usage()
        self.closed = False  # the run is over; the scope lives on while processes remain
        self.released = False  # and now nothing of it remains
        self.kept = 0  # leftovers counted (not ended) when the main process exited
        #: Called after :meth:`record` changed (the agent saves it); set by the owner.
        self.persist: Callable[[], None] | None = None
        self._ended: set[Identity] = set()
        self._ending = gevent.lock.Semaphore()

    # -- the start -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """What the run's environment gets: the mark, inherited by every descendant."""
        return {procfs.MARK_VARIABLE: self.mark}

    def preexec(self) -> Callable[[], None] | None:
        """A function for the child to run between fork and exec, if the mode needs one."""
        return None

    def attach(self, pid: int) -> None:
        """The main process has been forked (and has exec'd): remember who it is."""
        self.main = procfs.identity_of(pid) or Identity(pid, 0)
        self.started_at = time.time()

    # -- membership (per mode) -------------------------------------------------------------

    def members(self, snapshot: Snapshot | None = None) -> list[ProcStat]:
        """The run's processes now, zombies excluded."""
        raise NotImplementedError

    def _send(self, stat: ProcStat, sig: int) -> bool:
        return procfs.send_to_identity(stat.identity, sig)

    def _kill(self, targets: list[ProcStat], everything: bool) -> None:
        for stat in targets:
            self._send(stat, signal.SIGKILL)

    # -- ending ------------------------------------------------------------------------------

    def signal(self, sig: int, *, cont: bool = False, which: Which | None = None) -> set[Identity]:
        """Send ``sig`` (then SIGCONT, if ``cont``: a stopped process cannot act on SIGTERM) to
        every member, and to members that appeared meanwhile, until a pass finds none new."""
        seen: set[Identity] = set()
        for _ in range(MAX_PASSES):
            fresh = [s for s in self.members() if s.identity not in seen and (which is None or which(s))]
            if not fresh:
                break
            for stat in fresh:
                if self._send(stat, sig) and cont:
                    self._send(stat, signal.SIGCONT)
            seen.update(stat.identity for stat in fresh)
        return seen

    def kill(self, which: Which | None = None) -> set[Identity]:
        """SIGKILL every member, until a pass finds none left."""
        killed: set[Identity] = set()
        for _ in range(MAX_PASSES):
            left = [s for s in self.members() if which is None or which(s)]
            if not left:
                break
            self._kill(left, everything=which is None)
            killed.update(stat.identity for stat in left)
            gevent.sleep(0.001)  # let the kernel finish them before looking again
        return killed

    def end(self, grace: float, which: Which | None = None) -> int:
        """SIGTERM every member (``which`` chooses some), SIGKILL what is left after ``grace``
        seconds, and wait until they are gone. Returns how many processes this ended. Blocks the
        calling greenlet; a second caller waits for the first and finds nothing left."""
        with self._ending:
            before = len(self._ended)
            self._ended |= self.signal(signal.SIGTERM, cont=True, which=which)
            if not self._wait_gone(grace, which):
                self._ended |= self.kill(which)
                if not self._wait_gone(KILL_WAIT_S, which):
                    log.warning("run %s: processes survive SIGKILL: %s", self.mark,
                                [s.pid for s in self._remaining(which)])
            self._wait_reaped()
            return len(self._ended) - before

    def _remaining(self, which: Which | None) -> list[ProcStat]:
        return [s for s in self.members() if which is None or which(s)]

    def _wait_gone(self, timeout: float, which: Which | None) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while self._remaining(which):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            gevent.sleep(min(delay, left))
            delay = min(delay * 2, 0.1)
        return True

    def _wait_reaped(self) -> None:
        # Processes the server adopted (as subreaper) are zombies of ours until libev reaps
        # them on its next loop iteration: let it, so that nothing of the run is left at all.
        deadline = time.monotonic() + REAP_WAIT_S
        while subreaper.unreaped_children() and time.monotonic() < deadline:
            gevent.sleep(0.005)

    def settle(self, hang_up: Callable[[], object]) -> None:
        """The main process has exited: ``hang_up()`` the terminal (its process group gets
        SIGHUP, as when a terminal window closes), then end what is left, or count it as kept.
        Everything found at the exit that is gone afterwards counts as ended."""
        found = {stat.identity for stat in self.members()}
        hang_up()
        if self.leftovers == "kill":
            self.end(self.grace_s)
            self._ended |= found - {stat.identity for stat in self.members()}
        else:
            self.kept = len(self.members())

    @property
    def ended(self) -> int:
        """How many of the run's processes the supervisor ended (stop, leftovers, recovery)."""
        return len(self._ended)

    @property
    def processes(self) -> int:
        return len(self.members())

    # -- the figures and the record ------------------------------------------------------------

    def sample(self, snapshot: Snapshot | None, now: float) -> None:
        self.usage.add_tree(self.members(snapshot), now)

    def record(self) -> RunRecord:
        """What a server that starts after a crash of this one needs to find the run again."""
        return RunRecord(mode=self.mode, mark=self.mark, boot_id=procfs.boot_id(), main=self.main,
                         started_at=self.started_at)

    def release(self) -> bool:
        """Give back what the run held; True once done (False: processes still keep it)."""
        return not self.members()

    @property
    def cgroup_path(self) -> str | None:
        """The run's cgroup as ``/proc/<pid>/cgroup`` shows it, in cgroup mode."""
        return None


class CgroupScope(RunScope):
    """A run in a cgroup of its own."""

    mode = "cgroup"

    def __init__(self, mark: str, cgroup: RunCgroup, **kw: Any) -> None:
        super().__init__(mark, **kw)
        self.cgroup = cgroup

    def preexec(self) -> Callable[[], None]:
        return self.cgroup.join

    def members(self, snapshot: Snapshot | None = None) -> list[ProcStat]:
        found = []
        for pid in self.cgroup.pids():
            stat = procfs.read_stat(pid)
            if stat is not None and stat.running:
                found.append(stat)
        return found

    def _send(self, stat: ProcStat, sig: int) -> bool:
        return procfs.send_signal(stat.pid, sig, self.cgroup.holds)

    def _kill(self, targets: list[ProcStat], everything: bool) -> None:
        if not (everything and self.cgroup.kill()):
            super()._kill(targets, everything)

    def sample(self, snapshot: Snapshot | None, now: float) -> None:
        self.usage.add_cgroup(self.members(), self.cgroup.cpu_usec(), now)

    def record(self) -> RunRecord:
        return dataclasses.replace(super().record(), cgroup=self.cgroup.directory)

    def release(self) -> bool:
        return self.cgroup.remove()

    @property
    def cgroup_path(self) -> str | None:
        return self.cgroup.path


class TreeScope(RunScope):
    """A run followed through the process tree: the main process, what descends from it, and
    the orphans the server adopted as subreaper (see :mod:`.subreaper`)."""

    mode = "subreaper"

    def __init__(self, mark: str, take_snapshot: Callable[[], Snapshot], *,
                 roots: set[Identity] | None = None, **kw: Any) -> None:
        super().__init__(mark, **kw)
        self._take_snapshot = take_snapshot
        self._roots = set(roots or ())  # found after a crash: processes known to be the run's
        self.known: set[Identity] = set(self._roots)  # every process seen in the run last time
        self._recorded: frozenset[Identity] = frozenset()

    def members(self, snapshot: Snapshot | None = None) -> list[ProcStat]:
        snapshot = snapshot or self._take_snapshot()
        roots = [stat for identity in ({self.main} if self.main else set()) | self._roots
                 if (stat := snapshot.find(identity)) is not None]
        roots.extend(snapshot.orphans.get(self.mark, ()))
        found = procfs.descendants(roots, snapshot.children)
        self.known = {stat.identity for stat in found}
        return [stat for stat in found if stat.running]

    def sample(self, snapshot: Snapshot | None, now: float) -> None:
        members = self.members(snapshot)
        self.usage.add_tree(members, now)
        current = frozenset(stat.identity for stat in members)
        if current != self._recorded and not self.closed:
            self._recorded = current
            if self.persist is not None:
                self.persist()

    def record(self) -> RunRecord:
        members = sorted(self._recorded, key=lambda i: i.start)[:RECORD_MEMBERS]
        return dataclasses.replace(super().record(), members=tuple(members))


class GroupScope(TreeScope):
    """A run as its process group, the way stop always worked: a child that calls setsid()
    leaves it. The fallback where neither a cgroup nor a subreaper is possible."""

    mode = "group"

    def members(self, snapshot: Snapshot | None = None) -> list[ProcStat]:
        if self.main is None:
            return []
        snapshot = snapshot or self._take_snapshot()
        group = self.main.pid
        found = [stat for stat in snapshot.stats if stat.pgid == group and stat.start >= self.main.start]
        self.known = {stat.identity for stat in found}
        return [stat for stat in found if stat.running]
