"""Containment: an agent's processes are everything it started, and they end with it.

One :class:`Containment` per server (the registry's) chooses how runs are contained (the
``containment`` setting), makes a :class:`~.scope.RunScope` for each run and keeps track of
the runs that still hold processes; one :class:`~.sampler.Sampler` reads what they cost; an
agent's :class:`~.custody.Custody` holds its runs' scopes and counts; :mod:`.recovery` finds
and ends what a crashed server left running.

The modes, best first (``auto`` takes the first that works here):

- ``cgroup``: a cgroup v2 per run (:mod:`.cgroup`), systemd's ``KillMode=control-group``.
  Nothing escapes it: not ``setsid``, not a double fork. The server is also made a subreaper,
  so the processes it ends are reaped at once instead of lingering as zombies of init.
- ``subreaper``: the server adopts every orphan of its runs, and a per-run mark in the
  environment says whose it is (:mod:`.subreaper`).
- ``group``: the main process's process group, what supervisord's ``stopasgroup`` and
  ``killasgroup`` do; a ``setsid`` escapes it.

``leftovers`` (``kill``, the default, or ``keep``) says what happens to a run's other processes
when its main process exits; a stop always ends everything.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event

from ..config import CONTAINMENT_MODES
from ..exceptions import ConfigError
from . import procfs, subreaper
from .cgroup import CgroupUnavailable, Hierarchy, ServerCgroup
from .procfs import Identity
from .scope import CgroupScope, GroupScope, RunScope, Snapshot, TreeScope

log = logging.getLogger(__name__)

__all__ = ["Containment", "RunScope", "server_id_for"]


def server_id_for(data_dir: str | os.PathLike[str] | None) -> str:
    """A server's id: the same for every server on one data directory (so that the next one
    finds what the last one left), random without one."""
    if data_dir is None:
        return os.urandom(6).hex()
    return hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]


class Containment:
    """How one server contains its runs. Methods run in greenlets of one hub.

    Raises :class:`ConfigError` when the setting asks for a mode this machine cannot give
    (``cgroup`` without a writable cgroup2 hierarchy). :meth:`close` gives back what it took
    (the subreaper attribute, the server's parent cgroup).
    """

    def __init__(self, setting: str = "auto", server_id: str | None = None) -> None:
        if setting not in CONTAINMENT_MODES:
            raise ConfigError(f"containment must be one of {', '.join(CONTAINMENT_MODES)}, not {setting!r}")
        self.setting = setting
        self.server_id = server_id or server_id_for(None)
        self.reason = ""  # why the mode in force is not a better one
        self.cgroups: ServerCgroup | None = None
        self._reaper = False
        self.mode = self._choose(setting)
        self._scopes: dict[str, RunScope] = {}  # by mark: live runs, and ended ones still holding processes
        self._tracking = gevent.event.Event()  # set while _scopes is not empty (the sampler waits on it)
        self._marks: dict[Identity, str | None] = {}  # adopted orphans' marks, read once each
        log.info("containment: %s%s", self.mode, f" ({self.reason})" if self.reason else "")

    def _choose(self, setting: str) -> str:
        if setting in ("auto", "cgroup"):
            try:
                self.cgroups = ServerCgroup(Hierarchy.find(), self.server_id)
            except CgroupUnavailable as exc:
                if setting == "cgroup":
                    raise ConfigError(f"containment = cgroup, but {exc}") from None
                self.reason = f"no cgroup: {exc}"
            else:
                self._reaper = subreaper.acquire()
                return "cgroup"
        if setting in ("auto", "subreaper"):
            self._reaper = subreaper.acquire()
            if self._reaper:
                return "subreaper"
            if setting == "subreaper":
                raise ConfigError("containment = subreaper, but this kernel has no PR_SET_CHILD_SUBREAPER")
            self.reason += "; no subreaper either" if self.reason else "no subreaper"
        return "group"

    def describe(self) -> dict[str, Any]:
        """The mode in force, the setting, why not a better mode, and the server's cgroup."""
        shown: dict[str, Any] = {"mode": self.mode, "setting": self.setting}
        if self.reason:
            shown["reason"] = self.reason
        if self.cgroups is not None:
            shown["cgroup"] = self.cgroups.directory
        return shown

    # -- runs ------------------------------------------------------------------------------

    def new_scope(self, agent: str, run: int, *, leftovers: str = "kill", grace_s: float = 5.0) -> RunScope:
        """The scope of a run about to start (raises ``OSError`` if its cgroup cannot be made)."""
        mark = subreaper.new_mark(self.server_id, agent, run)
        scope: RunScope
        if self.mode == "cgroup":
            assert self.cgroups is not None
            cgroup = self.cgroups.create(f"{agent}.{run}.{mark.rsplit(':', 1)[1]}")
            scope = CgroupScope(mark, cgroup, leftovers=leftovers, grace_s=grace_s)
        elif self.mode == "subreaper":
            scope = TreeScope(mark, self.snapshot, leftovers=leftovers, grace_s=grace_s)
        else:
            scope = GroupScope(mark, self.snapshot, leftovers=leftovers, grace_s=grace_s)
        self._track(scope)
        return scope

    def adopt(self, scope: RunScope) -> None:
        """Keep watching the scope of a run that is over but still holds processes (found after
        a crash): it is sampled, and let go of once they are gone."""
        scope.closed = True
        self._track(scope)

    def _track(self, scope: RunScope) -> None:
        self._scopes[scope.mark] = scope
        self._tracking.set()

    def scopes(self) -> list[RunScope]:
        """The runs being watched now."""
        return list(self._scopes.values())

    def wait_for_runs(self, timeout: float | None = None) -> bool:
        """Block this greenlet until some run is being watched; False after ``timeout``."""
        return self._tracking.wait(timeout)

    def close_scope(self, scope: RunScope) -> None:
        """The run is over: give back its cgroup now, or once its kept processes are gone."""
        scope.closed = True
        self.let_go(scope)
        if not scope.released:
            scope.sample(None, time.monotonic())  # what was kept, now rather than at the next tick

    def let_go(self, scope: RunScope) -> None:
        """Stop watching an ended run once nothing of it is left (its cgroup is removed)."""
        if scope.release():
            scope.released = True
            self._scopes.pop(scope.mark, None)
            if not self._scopes:
                self._tracking.clear()

    # -- the process table -----------------------------------------------------------------

    def snapshot(self, pause: Callable[[], None] | None = None) -> Snapshot:
        """Every process, with the orphans we adopted sorted by run (tree modes only)."""
        stats = list(procfs.scan(pause if pause is not None else _yield))
        me = os.getpid()
        mains = {scope.main.pid for scope in self._scopes.values() if scope.main is not None}
        owner = {identity: scope.mark for scope in self._scopes.values()
                 if isinstance(scope, TreeScope) for identity in scope.known}
        orphans: dict[str, list[procfs.ProcStat]] = {}
        marks: dict[Identity, str | None] = {}
        for stat in stats:
            if stat.ppid != me or stat.pid in mains:
                continue
            identity = stat.identity
            mark = owner.get(identity)
            if mark is None:
                mark = self._marks[identity] if identity in self._marks else procfs.mark_of(stat.pid)
                marks[identity] = mark
            if mark is not None:
                orphans.setdefault(mark, []).append(stat)
        self._marks = marks  # only the orphans still here
        return Snapshot(stats, orphans)

    # -- the end ---------------------------------------------------------------------------

    def close(self) -> None:
        """Give back what can be given back (the server is shutting down): the cgroups of ended
        runs that are empty, the server's parent cgroup if nothing is left in it, the subreaper
        attribute. Idempotent."""
        for scope in list(self._scopes.values()):
            if scope.closed:
                self.let_go(scope)
        if self.cgroups is not None:
            self.cgroups.remove()
        if self._reaper:
            subreaper.release()
            self._reaper = False


def _yield() -> None:
    gevent.sleep(0)
