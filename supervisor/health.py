"""Storage health: which files cannot be written now, since when, and what it cost.

A full disk, an I/O error, a read-only remount or a file removed underneath must not stop an
agent or its live streams (issue 12): the writers report here and go on. What a person then
needs to see, and where:

- **once per episode**, a warning in the log and an ``error`` event ``storage_failed`` on the
  agent's stream (on ``/api/stream`` only for the supervisor's own files). An episode of an
  owner (an agent, or the supervisor) starts with its first failing file and ends when every
  file that failed has been written again: a full disk fails an agent's history, its
  ``output.log`` and its record together, and that is one episode, not three, nor one per line.
  A failure within :data:`REARM_S` of the end of the owner's last episode continues it, silently
  (a disk that flaps between full and not is one episode, not one per flap);
- **while it lasts**, ``/healthz`` says ``degraded`` with the reasons, and ``/api/sse/stats``
  the details (:meth:`StorageHealth.status`);
- **the cost**: events waiting in memory to be written (``events_unwritten``), events that
  fell out of memory before they could be (``events_lost``, which resumers are told about with
  ``reset``), and bytes of ``output.log`` that were dropped;
- **for monitoring**, ``/metrics`` reads the same counters, with every failed write counted by
  what it was writing (:attr:`StorageHealth.errors`, by :data:`KINDS`): this is the one source
  of the server's storage figures.

Writers retry by themselves when they write next (an agent's next line); a writer that may
have nothing more to write (an agent that is done, a record, the id mark) gives a ``retry``
with its failure, and one greenlet calls those every :data:`RETRY_S` until each works again:
space that comes back is used without anyone having to print a line.

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
#: Seconds after an episode ends during which a new failure of the same owner continues it.
REARM_S = 10.0
#: Seconds between two calls of the retries of failing writes.
RETRY_S = 0.5
#: What a failed write was for: an agent's history, its segments' manifest, its ``output.log``,
#: its record (``agent.json``), the id counter's reserved mark.
KINDS = ("history", "manifest", "output", "record", "ids")


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
        self._ended: dict[str, float] = {}  # owner -> when its last episode ended
        self._retries: dict[tuple[str, str], Callable[[], object]] = {}
        self._retrier: Any = None
        self.episodes_total = 0
        #: Failed writes since the server started, by kind (:data:`KINDS`); a retry that
        #: fails again counts again.
        self.errors = dict.fromkeys(KINDS, 0)
        self.events_lost = 0
        self.output_bytes_lost = 0

    @property
    def degraded(self) -> bool:
        return bool(self._episodes)

    def failing(self, owner: str) -> bool:
        return owner in self._episodes

    def failed(self, owner: str, kind: str, path: Path | str, exc: OSError,
               retry: Callable[[], object] | None = None) -> None:
        """A write of ``path`` (``kind``: history, manifest, output, record, ids) for ``owner``
        failed. Logs and notifies at the start of an episode only. ``retry`` (which reports
        again, one way or the other) is called every :data:`RETRY_S` until it works."""
        path = str(path)
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if retry is not None:
            self._retries[(owner, kind)] = retry
            self._start_retrier()
        episode = self._episodes.get(owner)
        if episode is not None:
            episode.failing[kind] = path
            return
        reason = files.describe(exc)
        now = time.time()
        episode = Episode(owner, now, f"cannot write {path}: {reason}", {kind: path})
        self._episodes[owner] = episode
        if now - self._ended.get(owner, -REARM_S) < REARM_S:
            return  # the same trouble as a moment ago: already said
        self.episodes_total += 1
        log.warning("storage failed for %s: cannot write %s (%s); it keeps running and streaming, and"
                    " writing is retried (this is logged once until it works again)", owner, path, reason)
        if self.notify is not None:
            self.notify(owner, f"cannot write {path} ({reason}); the agent keeps running and streaming,"
                               " writing is retried")

    def recovered(self, owner: str, kind: str) -> None:
        """A write of ``kind`` for ``owner`` worked: the episode ends when nothing else fails."""
        self._retries.pop((owner, kind), None)
        episode = self._episodes.get(owner)
        if episode is None or episode.failing.pop(kind, None) is None or episode.failing:
            return
        del self._episodes[owner]
        self._ended[owner] = now = time.time()
        log.info("storage works again for %s after %.1f s", owner, now - episode.since)

    def forget(self, owner: str) -> None:
        """``owner`` is gone (an agent deleted): its episode, if any, ends with it."""
        self._episodes.pop(owner, None)
        self._ended.pop(owner, None)
        for key in [key for key in self._retries if key[0] == owner]:
            del self._retries[key]

    def _start_retrier(self) -> None:
        if self._retrier is None:
            import gevent

            self._retrier = gevent.spawn(self._retry_forever)

    def _retry_forever(self) -> None:
        import gevent

        try:
            while self._retries:
                gevent.sleep(RETRY_S)
                for key, retry in list(self._retries.items()):
                    if self._retries.get(key) is retry:
                        try:
                            retry()
                        except Exception:
                            log.exception("retrying the write of %s (%s) failed", *key)
        finally:
            self._retrier = None

    def close(self) -> None:
        """Stop retrying (the server is shutting down)."""
        self._retries.clear()
        retrier, self._retrier = self._retrier, None
        if retrier is not None:
            retrier.kill(block=False)

    def reasons(self) -> list[str]:
        return [f"{STORAGE_FAILED}: {e.owner}: {e.error}" for e in self._episodes.values()]

    def status(self, events_unwritten: int = 0) -> dict[str, Any]:
        """What ``/api/sse/stats`` shows under ``storage`` (``events_unwritten``: the event
        log's count of events waiting in memory)."""
        return {
            "status": "degraded" if self._episodes else "ok",
            "failing": [e.describe() for e in self._episodes.values()],
            "episodes_total": self.episodes_total,
            "errors": dict(self.errors),
            "events_unwritten": events_unwritten,
            "events_lost": self.events_lost,
            "output_bytes_lost": self.output_bytes_lost,
        }
