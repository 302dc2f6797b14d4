"""After a crash: find what is left of the runs that were live when the last server died, end it.

The registry hands :func:`recover` the :class:`~.record.RunRecord` of every agent that was live
(from ``agent.json``) and :func:`end_survivors` what was found, before any agent can start again:
re-creating a name then never runs a second copy beside an orphan. A run is found

- by its cgroup, if the record names one of this server's run cgroups and it still exists;
- else by identities (pid *and* start time, never a bare pid) recorded for it, and by its mark
  in the environment of processes anywhere on the machine, and what descends from those.

Nothing is found after a reboot (the boot id differs), and a record without a mark (an older
server's) is never trusted. Run cgroups of this server that no record needs any more are removed,
or watched until their kept processes are gone.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent

from . import procfs
from .procfs import Identity
from .record import RunRecord
from .scope import CgroupScope, RunScope, TreeScope

if TYPE_CHECKING:
    from . import Containment

log = logging.getLogger(__name__)


@dataclass
class Recovered:
    """What a start found of a run that was live when the last server died."""

    scope: RunScope | None  # what is still running of it (kept processes), if anything
    ended: int = 0
    kept: int = 0
    note: str = ""

    def event_data(self) -> dict[str, Any]:
        """For the ``lost`` state event."""
        data: dict[str, Any] = {"ended": self.ended, "kept": self.kept}
        if self.note:
            data["recovery"] = self.note
        return data


def recover(containment: Containment, records: Mapping[str, RunRecord | None]) -> dict[str, RunScope | None]:
    """Scopes of what is left of runs that were live when the last server died, by agent name
    (None: nothing of it is left, or nothing says what it was). Found scopes are adopted by
    ``containment`` (sampled, let go of once empty). Also tidies up this server's run cgroups
    that no record needs any more."""
    found: dict[str, RunScope | None] = {}
    boot = procfs.boot_id()
    wanted: dict[str, tuple[RunRecord, set[Identity]]] = {}
    adopted: set[str] = set()
    cgroups = containment.cgroups
    for name, record in records.items():
        found[name] = None
        if record is None or record.boot_id != boot:
            continue  # nothing says which run it was, or the machine rebooted: pids mean nothing
        if record.cgroup is not None and cgroups is not None and cgroups.owns(record.cgroup):
            cgroup = cgroups.run_cgroup(record.cgroup)
            if cgroup.exists():
                scope: RunScope = CgroupScope(record.mark, cgroup, main=record.main, started_at=record.started_at)
                containment.adopt(scope)
                found[name] = scope
                adopted.add(os.path.normpath(record.cgroup))
                continue
        wanted[name] = (record, set(record.members) | ({record.main} if record.main else set()))
    if wanted:
        marked = _find_marked(containment.server_id, {record.mark for record, _ in wanted.values()})
        for name, (record, identities) in wanted.items():
            scope = TreeScope(record.mark, containment.snapshot, roots=identities | marked.get(record.mark, set()),
                              main=record.main, started_at=record.started_at)
            if scope.members():
                containment.adopt(scope)
                found[name] = scope
    _sweep(containment, adopted)
    return found


def end_survivors(containment: Containment, found: Mapping[str, tuple[RunScope, str, float]]) -> dict[str, Recovered]:
    """End what :func:`recover` found, all runs at once, each ``(scope, leftovers, grace)``.

    The main process is always ended: it lost its terminal with the server, and a new run beside
    it would be a second copy. Its other processes follow ``leftovers``: ``keep`` leaves them
    running (a stop of the agent ends them later).
    """
    def settle(scope: RunScope, leftovers: str, grace: float) -> Recovered:
        main = scope.main
        if leftovers == "kill":
            ended = scope.end(grace)
        else:
            ended = scope.end(grace, which=lambda stat: stat.identity == main) if main else 0
        kept = scope.processes
        containment.close_scope(scope)
        return Recovered(scope if kept else None, ended, kept)

    jobs = {name: gevent.spawn(settle, *job) for name, job in found.items()}
    gevent.joinall(list(jobs.values()))
    results: dict[str, Recovered] = {}
    for name, job in jobs.items():
        if job.successful() and job.value is not None:
            results[name] = job.value
        else:
            log.error("ending what agent %s left running failed: %r", name, job.exception)
            results[name] = Recovered(None, note=f"ending its processes failed: {job.exception}")
    return results


def _find_marked(server_id: str, marks: set[str]) -> dict[str, set[Identity]]:
    """Processes anywhere on the machine whose environment carries one of ``marks``."""
    prefix = f"{server_id}:"
    found: dict[str, set[Identity]] = {}
    for stat in procfs.scan(_yield):
        if not stat.running:
            continue
        mark = procfs.mark_of(stat.pid)
        if mark is not None and mark.startswith(prefix) and mark in marks:
            found.setdefault(mark, set()).add(stat.identity)
    return found


def _sweep(containment: Containment, keep: set[str]) -> None:
    """Remove our empty run cgroups; keep watching the others (kept leftovers of old runs) until
    they empty."""
    cgroups = containment.cgroups
    if cgroups is None:
        return
    for directory in cgroups.children():
        if os.path.normpath(directory) in keep:
            continue
        cgroup = cgroups.run_cgroup(directory)
        if not cgroup.remove():
            containment.adopt(CgroupScope(f"{containment.server_id}:?:{os.path.basename(directory)}", cgroup))


def _yield() -> None:
    gevent.sleep(0)
