"""The one door every event goes through: give it an id, write it to history, then publish it.

The contract
------------
:class:`EventLogBackend` is what the rest of the server may rely on, written for a backend that
is not in this process (Redis Streams: a writer greenlet sends batches to a script that assigns
ids and stores, one reader per node publishes what it reads). The SSE manager, the registry and
the agents use the log through these calls only:

- ``append(agent_name, type, data, channel=None) -> Event`` queues the event for the next
  commit and returns at once, **without yielding** (an agent's state change and its output
  stay atomic on the hub). ``append_many(agent_name, items)`` is the same for a batch of
  ``(type, data)``. The returned event's ``id`` is final in the embedded backend; callers in
  the server do not rely on it (a backend may assign ids at commit).
- **Commit.** Events are committed in batches (group commit): written to their history, in id
  order, and only then handed to subscribers and found by readers. The embedded backend commits
  once per hub loop iteration (one write per history file touched); ``flush()`` commits what
  is pending now. Nothing reaches a reader or subscriber before it is written: an event a
  client has seen survives a crash of the server (issue 12's *write-ahead*). With
  ``durability = "fsync"`` the commit also fsyncs before it publishes.
- ``replay(after_id, agent_name=None) -> Cursor`` (:mod:`supervisor.replay`): what is kept
  after an id, oldest first, in bounded steps; ``reset``/``missed`` say what is gone.
  ``cursor.take(n)`` may yield (a disk read, a round trip), except when it comes back empty:
  it returns no events only when the reader has all, and without yielding after finding that
  out, so a caller can register for live events in the same breath.
- ``read_after(after_id, agent_name=None, limit=None) -> Replay``: the same in one list (for
  the REST events page and tests); it may yield between steps, never when it is empty.
- ``last_id(agent_name=None) -> int``: the newest committed id, of one agent or of all.
- ``subscribe(receiver, types) -> Subscription``: ``receiver(sender, event=event)`` is called for
  every event of those types committed after ``last_id()`` as it was when it subscribed, once
  each, in id order, until the subscription is closed. Subscribers must tell by id what they
  have already read from history: delivery may lag behind ``replay``.
- ``health``: the :class:`~supervisor.health.StorageHealth` its write failures go to; a
  failure never raises from ``append`` or the commit (events keep flowing, from memory).
- Named extras: ``last_events(agent_name, n)`` (the newest ``n`` of one agent, for counts after a
  crash), ``remove(agent_name)`` (forget an agent's history), ``events_published`` (appended
  by this process, for the stats), ``storage_status()`` (for ``/api/sse/stats``),
  ``signal(type)`` (the blinker signal, for blinker's test helpers) and ``close()``.

**Ids** are strictly increasing integers shared by all agents of one supervisor and never
reused, across crashes too: a block of them is reserved on disk before any is written or sent
(:mod:`supervisor.ids`). Within one server process they are consecutive; a restart skips
ahead, to above everything the last process may have handed out.

**Resets.** A reader whose id is older than what is kept, or before events that were lost
(deleted segments, damaged lines, events that could not be written during a storage failure),
gets ``reset`` with the exact number ``missed`` (per-agent numbering in the segment manifest:
see :mod:`supervisor.history`). An id above anything this data directory ever gave out (it was
wiped) is ``reset`` with ``missed`` 0 and a replay of everything. An id inside a restart's skip
is no loss: nobody saw those ids.

The embedded backend
--------------------
:class:`EventLog` keeps ids in a counter reserved by :class:`~supervisor.ids.IdReservation`,
history in :class:`~supervisor.history.AgentHistory` files, and publishes on its own
:class:`~supervisor.bus.EventBus` from the commit, a hub callback (or, with fsync, one greenlet
that fsyncs in gevent's thread pool while the next batch gathers).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gevent
from blinker import Signal
from gevent.hub import get_hub

from . import datadir, events, files
from .bus import EventBus, Receiver, Subscription
from .config import DURABILITY
from .events import Event
from .health import STORAGE_FAILED, StorageHealth
from .history import AgentHistory
from .ids import IDS_FILE, IdReservation
from .names import is_agent_name
from .replay import ChannelCursor, Cursor, MergedCursor, pause

log = logging.getLogger(__name__)

#: History channel of the supervisor itself (``agent_added`` / ``agent_removed``); never an
#: agent's name, which cannot start with ``@``.
SUPERVISOR_CHANNEL = "@supervisor"
assert not is_agent_name(SUPERVISOR_CHANNEL)


@dataclass(frozen=True, slots=True)
class Replay:
    """What a reader gets after ``after_id``: the events, and what it can no longer get.

    ``reset`` is True when events after the reader's id are gone (``missed`` of them: older
    than the retained history, or lost to damage or a storage failure) or when the id is newer
    than anything this supervisor ever issued (a wiped data directory, ``missed`` 0: then
    ``events`` is the whole history). ``first_available`` is the id of the first event given.
    """

    events: list[Event]
    reset: bool = False
    missed: int = 0
    first_available: int | None = None


Item = tuple[str, dict[str, Any]]


class EventLogBackend(Protocol):
    """The event log as the rest of the server sees it: see the module docstring."""

    @property
    def health(self) -> StorageHealth: ...

    @property
    def events_published(self) -> int: ...

    def append(self, agent_name: str, type: str, data: dict[str, Any], channel: str | None = None) -> Event: ...

    def append_many(self, agent_name: str, items: Iterable[Item]) -> None: ...

    def replay(self, after_id: int, agent_name: str | None = None) -> Cursor: ...

    def read_after(self, after_id: int, agent_name: str | None = None, limit: int | None = None) -> Replay: ...

    def last_id(self, agent_name: str | None = None) -> int: ...

    def flush(self) -> None: ...

    def subscribe(self, receiver: Receiver, types: Iterable[str] = events.EVENT_TYPES) -> Subscription: ...

    def signal(self, type: str) -> Signal: ...

    def last_events(self, agent_name: str, n: int) -> list[Event]: ...

    def remove(self, agent_name: str) -> None: ...

    def storage_status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


#: Events per step of :meth:`EventLog.read_after` (it pauses between steps).
READ_STEP = 1000


class EventLog:
    """The embedded backend: ids, history files and a bus for every agent of one supervisor.

    ``data_dir`` None keeps history in memory only (for tests and throw-away runs).
    ``durability``: ``"os"`` (the default) writes each batch to the operating system before
    publishing it, which survives a kill or crash of the server; ``"fsync"`` also waits for the
    disk, which survives power loss, at the cost measured in docs/PERFORMANCE.md. Not safe to
    share between threads: the whole server runs on one gevent hub.
    """

    def __init__(
        self,
        data_dir: Path | None,
        history_size: int = 10_000,
        max_events: int | None = None,
        memory_bytes: int = 8 << 20,
        *,
        durability: str = "os",
        health: StorageHealth | None = None,
    ) -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, not {durability!r}")
        self.data_dir = data_dir
        self.history_size = history_size
        self.max_events = max_events or None
        self.memory_bytes = memory_bytes
        self.durable = durability == "fsync"
        self.health = health if health is not None else StorageHealth()
        if self.health.notify is None:
            self.health.notify = self._storage_failed
        self._histories: dict[str, AgentHistory] = {}
        self._bus = EventBus(self)
        self._published = 0
        self._pending: list[tuple[Event, AgentHistory]] = []
        self._commit_scheduled = False
        self._committing: gevent.Greenlet[..., Any] | None = None
        self._loop = get_hub().loop
        if data_dir is not None:
            agents = datadir.agents_dir(data_dir)
            agents.mkdir(parents=True, exist_ok=True)
            for directory in sorted(agents.iterdir()):
                if directory.is_dir():
                    self._open(directory.name)
                else:
                    log.warning("%s is not a folder; it is skipped", directory)
        self._open(SUPERVISOR_CHANNEL)
        floor = max((h.highest_id for h in self._histories.values()), default=0)
        self._ids = IdReservation(data_dir / IDS_FILE if data_dir is not None else None, floor,
                                  durable=self.durable, health=self.health, owner=SUPERVISOR_CHANNEL)
        self._next_id = self._ids.start
        self._committed = max((h.last_id for h in self._histories.values()), default=0)

    def _directory(self, channel: str) -> Path | None:
        if self.data_dir is None:
            return None
        if channel == SUPERVISOR_CHANNEL:
            return datadir.supervisor_dir(self.data_dir)
        return datadir.agent_dir(self.data_dir, channel)

    def _open(self, channel: str) -> AgentHistory:
        history = self._histories.get(channel)
        if history is None:
            directory = self._directory(channel)
            try:
                history = self._history(channel, directory)
            except OSError as exc:
                log.warning("the history of %s in %s cannot be read (%s); its new events are kept in memory only",
                            channel, directory, files.describe(exc))
                history = self._history(channel, None)
            self._histories[channel] = history
        return history

    def _history(self, channel: str, directory: Path | None) -> AgentHistory:
        return AgentHistory(channel, directory, self.history_size, self.max_events, memory_bytes=self.memory_bytes,
                            health=self.health, durable=self.durable)

    @property
    def events_published(self) -> int:
        """Events appended by this process (not those found on disk at start)."""
        return self._published

    @property
    def first_id(self) -> int:
        """The first id this process gives out (above every id of earlier ones)."""
        return self._ids.start

    # -- appending and committing ----------------------------------------------------------

    def append(self, agent_name: str, type: str, data: dict[str, Any], channel: str | None = None) -> Event:
        """Make an event with the next id and queue it for the next commit (this iteration of
        the hub loop); never yields, never raises for a storage failure.

        ``channel`` is where it is kept: the agent's own history unless given (``agent_added``
        and ``agent_removed`` go to :data:`SUPERVISOR_CHANNEL`, so they outlive the agent).
        """
        event = Event(self._next_id, type, agent_name, data)
        self._next_id += 1
        key = channel or agent_name
        history = self._histories.get(key) or self._open(key)
        self._pending.append((event, history))
        self._published += 1
        if not self._commit_scheduled and self._committing is None:
            self._commit_scheduled = True
            self._loop.run_callback(self._commit)
        return event

    def append_many(self, agent_name: str, items: Iterable[Item]) -> None:
        """:meth:`append` for each ``(type, data)`` of ``items``, in order."""
        append = self.append
        for type, data in items:
            append(agent_name, type, data)

    def _commit(self) -> None:
        # A hub callback, once per loop iteration in which events were appended. It must not
        # raise: a bug here is logged, the events of the batch are lost to subscribers.
        self._commit_scheduled = False
        if self._committing is not None or not self._pending:
            return
        if self.durable:
            self._committing = gevent.spawn(self._commit_durably)
            return
        try:
            self._commit_batch(in_thread=False)
        except Exception:
            log.exception("committing a batch of events failed")

    def _commit_durably(self) -> None:
        # Group commit: while one batch is being fsynced, the next gathers.
        try:
            while self._pending:
                self._commit_batch(in_thread=True)
        except Exception:
            log.exception("committing a batch of events failed")
        finally:
            self._committing = None

    def _commit_batch(self, in_thread: bool) -> None:
        """Reserve the batch's ids, write each history's events (one write per file), fsync if
        asked, make them visible, then publish in id order."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        last = pending[-1][0].id
        self._ids.cover(last, in_thread)
        groups: dict[AgentHistory, list[Event]] = {}
        for event, history in pending:
            batch = groups.get(history)
            if batch is None:
                groups[history] = [event]
            else:
                batch.append(event)
        now = time.monotonic()
        written: list[tuple[AgentHistory, int]] = []
        for history, batch in groups.items():
            fd = history.write(batch, now, in_thread)
            history.append(batch)
            if fd is not None:
                written.append((history, fd))
        if self.durable:
            self._fsync(written, in_thread)
        for history, batch in groups.items():
            history.visible_id = batch[-1].id
        self._committed = last
        publish = self._bus.publish
        error: Exception | None = None
        for event, _ in pending:
            try:
                publish(event)
            except Exception as exc:  # a receiver connected directly (blinker's contract): it raised
                if in_thread or error is not None:
                    log.exception("a receiver of %s events raised", event.type)
                error = error or exc
        for history, batch in groups.items():
            if batch[-1].type == events.COMPLETE:
                # The agent is done: give its file descriptor back (a new run reopens the file).
                history.close()
        if error is not None and not in_thread:
            raise error

    @staticmethod
    def _fsync(written: list[tuple[AgentHistory, int]], in_thread: bool) -> None:
        if not written:
            return
        if in_thread:
            pool = get_hub().threadpool
            results = [(history, pool.spawn(files.fsync, fd)) for history, fd in written]
        else:
            results = []
            for history, fd in written:
                try:
                    files.fsync(fd)
                except OSError as exc:
                    history.sync_failed(exc)
                else:
                    history.synced()
            return
        for history, result in results:
            try:
                result.get()
            except OSError as exc:
                history.sync_failed(exc)
            else:
                history.synced()

    def flush(self) -> None:
        """Commit what is pending now (fsynced too with ``durability = "fsync"``); from a
        greenlet, a group commit in flight is waited for first."""
        committing = self._committing
        if committing is not None and committing is not gevent.getcurrent():
            committing.join()
        if self._pending:
            self._commit_batch(in_thread=False)

    def _storage_failed(self, owner: str, message: str) -> None:
        """The start of a storage failure episode: an ``error`` event on the owner's stream."""
        self.append(owner, events.ERROR, {"code": STORAGE_FAILED, "message": message})

    # -- reading ---------------------------------------------------------------------------

    def replay(self, after_id: int, agent_name: str | None = None) -> Cursor:
        """A cursor over the committed events newer than ``after_id``, of one agent or of
        every agent (and the supervisor's own channel), with ``reset``/``missed`` set."""
        if after_id > self._committed and after_id >= self._ids.start:
            # The reader knows ids this data directory never issued: it was wiped.
            reset, missed, after_id = True, 0, 0
        else:
            histories = self._selected(agent_name)
            missed = sum(h.missed_after(after_id) for h in histories)
            reset = missed > 0
        if agent_name is None:
            return MergedCursor(self._histories.items, lambda: self._committed, after_id, reset, missed)
        history = self._histories.get(agent_name)
        return ChannelCursor(history.cursor(after_id) if history is not None else None, reset, missed)

    def read_after(self, after_id: int, agent_name: str | None = None, limit: int | None = None) -> Replay:
        """Committed events newer than ``after_id`` of one agent, or of every agent when
        ``agent_name`` is None, oldest first, at most ``limit``. Pauses between steps of
        :data:`READ_STEP` events; returns at once when there is nothing."""
        cursor = self.replay(after_id, agent_name)
        found: list[Event] = []
        while limit is None or len(found) < limit:
            if found:
                pause()
            step = cursor.take(READ_STEP if limit is None else min(READ_STEP, limit - len(found)))
            if not step:
                break
            found.extend(step)
        return Replay(found, cursor.reset, cursor.missed, found[0].id if found else None)

    def last_id(self, agent_name: str | None = None) -> int:
        """Newest committed id of one agent, or of the whole supervisor; 0 when there is none."""
        if agent_name is None:
            return self._committed
        history = self._histories.get(agent_name)
        return history.last_id if history is not None else 0

    # -- listening -------------------------------------------------------------------------

    def subscribe(self, receiver: Receiver, types: Iterable[str] = events.EVENT_TYPES) -> Subscription:
        """See :meth:`supervisor.bus.EventBus.subscribe`; close the handle to stop listening."""
        return self._bus.subscribe(receiver, types)

    def signal(self, type: str) -> Signal:
        """The blinker signal of events of ``type`` (for ``muted()`` and ``connected_to()``)."""
        return self._bus.signal(type)

    def receiver_count(self) -> int:
        return self._bus.receiver_count()

    # -- named extras ----------------------------------------------------------------------

    def last_events(self, agent_name: str, n: int) -> list[Event]:
        """The newest ``n`` events of one agent, oldest first."""
        history = self._histories.get(agent_name)
        return history.last(n) if history is not None else []

    def remove(self, agent_name: str) -> None:
        """Forget an agent's history, its files too (the folder goes once nothing else is in it)."""
        self.flush()  # nothing of it may be written after its files are gone
        history = self._histories.pop(agent_name, None)  # every folder on disk was opened at start
        if history is not None:
            history.destroy()

    def storage_status(self) -> dict[str, Any]:
        """The storage part of ``/api/sse/stats`` (see :class:`~supervisor.health.StorageHealth`)."""
        return self.health.status(sum(h.unwritten for h in self._histories.values()))

    def close(self) -> None:
        self.flush()
        for history in self._histories.values():
            history.close()
        self.health.close()

    def _selected(self, agent_name: str | None) -> list[AgentHistory]:
        if agent_name is not None:
            history = self._histories.get(agent_name)
            return [history] if history is not None else []
        return list(self._histories.values())
