"""Writes to the data directory that failed, counted by what they were writing.

A full disk or an I/O error never stops an agent: the write is given up, logged, and counted
here, and ``/metrics`` shows the counts (``agent_supervisor_storage_errors_total``), so that a
monitor sees a server that runs on but keeps less than it should. One per server, held by its
:class:`~supervisor.store.AgentStore`.
"""
from __future__ import annotations

#: What a failed write was for: an agent's history, its ``output.log``, its ``agent.json``.
KINDS = ("history", "output", "record")


class StorageFaults:
    """Failed writes since the server started, by kind (see :data:`KINDS`)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = dict.fromkeys(KINDS, 0)

    def failed(self, kind: str) -> None:
        self.counts[kind] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())
