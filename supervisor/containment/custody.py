"""One agent's processes across its runs: the scope of its current or last run, what a lost run
left, and the counts its events report. The agent (lifecycle) asks; this keeps the facts.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..store import Processes
from . import recovery
from .record import RunRecord
from .scope import RunScope
from .usage import Figures

if TYPE_CHECKING:
    from . import Containment

log = logging.getLogger(__name__)


class Custody:
    """Custody of one agent's processes. Methods run in greenlets of one hub."""

    def __init__(self, containment: Containment, agent: str) -> None:
        self.containment = containment
        self.agent = agent
        self.scope: RunScope | None = None  # the current or last run's processes
        self.ended = 0  # processes of the last run the supervisor ended (stop, leftovers, recovery)
        self.kept = 0  # processes the last run left behind and were kept (leftovers = keep)
        self._lost: RunRecord | None = None  # how to find a lost run's processes again

    def begin(self, run: int, leftovers: str, grace_s: float) -> RunScope:
        """The scope for a new run (``OSError`` if its cgroup cannot be made)."""
        self.ended = self.kept = 0
        self._lost = None
        self.scope = None  # the last run's (if it kept processes) stays with the containment
        self.scope = self.containment.new_scope(self.agent, run, leftovers=leftovers, grace_s=grace_s)
        return self.scope

    def finish(self, scope: RunScope) -> None:
        """The run is over (its leftovers ended or counted): give back what it held."""
        self.containment.close_scope(scope)
        if scope is self.scope:
            self.ended, self.kept = scope.ended, scope.kept

    def restore(self, saved: Processes | None, recovered: recovery.Recovered | None) -> dict[str, Any]:
        """A run that was live when the last supervisor died; returns the ``lost`` event's data."""
        if saved is not None:
            self._lost = saved.live_run
        if recovered is None:
            return {"ended": 0, "kept": 0}
        self.scope = recovered.scope
        self.ended, self.kept = recovered.ended, recovered.kept
        return recovered.event_data()

    def end_remains(self, grace: float, lost: bool) -> int:
        """A stop with no live run: end what the last run left (kept processes, or whatever a
        crashed supervisor left of a lost run). Returns how many processes that ended."""
        scope = self.scope
        if scope is None and lost and self._lost is not None:
            scope = recovery.recover(self.containment, {self.agent: self._lost})[self.agent]
        if scope is None or not scope.closed:
            return 0
        ended = scope.end(grace)
        self.containment.close_scope(scope)
        if ended:
            self.ended += ended
            self.kept = 0
            self._lost = None
            log.info("agent %s: stop ended %d processes its last run left", self.agent, ended)
        return ended

    def processes(self, leftovers: str) -> Processes:
        """For the agent's record: the mode in force (its last run's, else the server's), the
        counts, the figures, and what a server starting after a crash needs to find the live run
        (an ended run has nothing to find: what it kept, it kept; a new one not started yet has
        no process)."""
        scope = self.scope
        live = scope.record() if scope is not None and not scope.closed else self._lost
        return Processes(
            mode=scope.mode if scope is not None else self.containment.mode,
            leftovers=leftovers,
            cgroup=scope.cgroup_path if scope is not None else None,
            ended=self.ended,
            kept=self.kept,
            live_run=live,
            usage=self.usage(),
        )

    def usage(self) -> Figures | None:
        """What the agent's processes cost now: its live run, or what its last run left."""
        scope = self.scope
        if scope is None or scope.released or (scope.closed and not scope.usage.processes):
            return None
        return scope.usage.figures(scope.started_at)
