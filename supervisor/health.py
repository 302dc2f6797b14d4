"""Storage health: which files cannot be written now, since when, and what it cost.

A full disk, an I/O error, a read-only remount or a file removed underneath must not stop an
agent or its live streams (issue 12): the writers report here and go on. What a person then
needs to see, and where:

- **once per episode**, a warning in the log and an ``error`` event ``storage_failed`` on the
  agent's stream (on ``/api/stream`` only for the supervisor's own files). An episode of an
  owner (an agent, or the supervisor) starts with its first failing file and ends when every
  file that failed has been written again: a full disk fails an agent's history, its
  ``output.log`` and its record together, and that is one episode, not three, nor one per line;
- **while it lasts**, ``/healthz`` says ``degraded`` with the reasons, and ``/api/sse/stats``
  the details (:meth:`StorageHealth.status`);
- **the cost**: events waiting in memory to be written (``events_unwritten``), events that
  fell out of memory before they could be (``events_lost``, which resumers are told about with
  ``reset``), and bytes of ``output.log`` that were dropped.

Not thread-safe: one hub.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import files
from .events import rfc3339

log = logging.getLogger(__name__)

#: ``notify(owner, message)``: say on the owner's stream that its storage failed.
Notify = Callable[[str, str], None]

#: The error code of the ``error`` event, and of ``/healthz``'s reasons.
STORAGE_FAILED = "storage_failed"


@dataclass
class Episode:
    """One owner's run of failures: the files failing now, the first error, when it began."""

    owner: str
    since: float
    error: str
    failing: dict[str, str] = field(default_factory=dict)  # kind -> path

    def describe(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "since": rfc3339(self.since),
            "error": self.error,
            "files": sorted(self.failing.values()),
        }


class StorageHealth:
    """Failure episodes of every owner of files in the data directory, and their counters.

    ``notify`` is called once at the start of each episode (the event log appends the
    ``error`` event); set it later with :attr:`notify` when the log is made after this.
    """

    def __init__(self, notify: Notify | None = None) -> None:
        self.notify = notify
        self._episodes: dict[str, Episode] = {}
        self.episodes_total = 0
        self.events_lost = 0
        self.output_bytes_lost = 0

    @property
    def degraded(self) -> bool:
        return bool(self._episodes)

    def failing(self, owner: str) -> bool:
        return owner in self._episodes

    def failed(self, owner: str, kind: str, path: Path | str, exc: OSError) -> None:
        """A write of ``path`` (``kind``: history, manifest, output, record, ids) for ``owner``
        failed. Logs and notifies at the start of an episode only."""
        path = str(path)
        episode = self._episodes.get(owner)
        if episode is not None:
            episode.failing[kind] = path
            return
        reason = files.describe(exc)
        episode = Episode(owner, time.time(), f"cannot write {path}: {reason}", {kind: path})
        self._episodes[owner] = episode
        self.episodes_total += 1
        log.warning("storage failed for %s: cannot write %s (%s); it keeps running and streaming, and"
                    " writing is retried (this is logged once until it works again)", owner, path, reason)
        if self.notify is not None:
            self.notify(owner, f"cannot write {path} ({reason}); the agent keeps running and streaming,"
                               " writing is retried")

    def recovered(self, owner: str, kind: str) -> None:
        """A write of ``kind`` for ``owner`` worked: the episode ends when nothing else fails."""
        episode = self._episodes.get(owner)
        if episode is None or episode.failing.pop(kind, None) is None or episode.failing:
            return
        del self._episodes[owner]
        log.warning("storage works again for %s after %.1f s", owner, time.time() - episode.since)

    def forget(self, owner: str) -> None:
        """``owner`` is gone (an agent deleted): its episode, if any, ends with it."""
        self._episodes.pop(owner, None)

    def reasons(self) -> list[str]:
        return [f"{STORAGE_FAILED}: {e.owner}: {e.error}" for e in self._episodes.values()]

    def status(self, events_unwritten: int = 0) -> dict[str, Any]:
        """What ``/api/sse/stats`` shows under ``storage`` (``events_unwritten``: the event
        log's count of events waiting in memory)."""
        return {
            "status": "degraded" if self._episodes else "ok",
            "failing": [e.describe() for e in self._episodes.values()],
            "episodes_total": self.episodes_total,
            "events_unwritten": events_unwritten,
            "events_lost": self.events_lost,
            "output_bytes_lost": self.output_bytes_lost,
        }
