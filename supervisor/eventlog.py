"""The one door every event goes through: give it an id, keep it in history, publish it.

The contract
------------
:class:`EventLogBackend` is what the rest of the server may rely on, written for a backend that
is not in this process (Redis Streams: ``XADD`` assigns the id and stores in one step, one
reader per node publishes what it reads). The SSE manager, the registry and the agents use the
log through these calls only:

- ``append(agent_name, type, data, channel=None) -> Event`` gives the event the next id and
  keeps it: once ``append`` returns, ``read_after`` finds it. Handing it to subscribers may come
  *later* than the return (the backend's reader publishes); it never comes before the event is
  readable.
- ``read_after(after_id, agent_name=None, limit=None) -> Replay``: what is kept after an id, oldest
  first, with an honest ``reset`` when some of it is gone. It may yield to the hub (a network
  round trip, a disk read), except when the reader is caught up: a call that returns no events
  returns without yielding, so a caller can register for live events in the same breath.
- ``last_id(agent_name=None) -> int``: the newest id kept, of one agent or of all.
- ``flush()``: make what was appended durable (cheap when nothing is pending).
- ``subscribe(receiver, types) -> Subscription``: ``receiver(sender, event=event)`` is called for
  every event of those types appended after ``last_id()`` as it was when it subscribed, once
  each, in id order, until the subscription is closed. Subscribers must tell by id what they
  have already read from history: delivery may lag behind ``read_after``.
- Named extras: ``last_events(agent_name, n)`` (the newest ``n`` of one agent, for counts after a
  crash), ``remove(agent_name)`` (forget an agent's history), ``events_published`` (appended
  by this process, for the stats), ``signal(type)`` (the blinker signal, for blinker's test
  helpers) and ``close()``.

Ids are strictly increasing integers, never reused, shared by all agents of one supervisor.

The embedded backend
--------------------
:class:`EventLog` keeps ids in a counter, history in :class:`~supervisor.history.AgentHistory`
files and publishes on its own :class:`~supervisor.bus.EventBus`. It hands each event to its
subscribers before ``append`` returns (which the contract allows and does not promise), and its
``read_after`` never yields.
"""
from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from blinker import Signal

from . import datadir, events
from .bus import EventBus, Receiver, Subscription
from .events import Event
from .history import AgentHistory
from .names import is_agent_name

log = logging.getLogger(__name__)

#: History channel of the supervisor itself (``agent_added`` / ``agent_removed``); never an
#: agent's name, which cannot start with ``@``.
SUPERVISOR_CHANNEL = "@supervisor"
assert not is_agent_name(SUPERVISOR_CHANNEL)


@dataclass(frozen=True, slots=True)
class Replay:
    """What a reader gets after ``after_id``: the events, and what it can no longer get.

    ``reset`` is True when the reader's id is older than the retained history (``missed`` events
    are gone) or newer than anything this supervisor ever issued (a wiped data directory); the
    reader should drop what it has and take ``events`` as the whole history.
    """

    events: list[Event]
    reset: bool = False
    missed: int = 0
    first_available: int | None = None


class EventLogBackend(Protocol):
    """The event log as the rest of the server sees it: see the module docstring."""

    @property
    def events_published(self) -> int: ...

    def append(self, agent_name: str, type: str, data: dict[str, Any], channel: str | None = None) -> Event: ...

    def read_after(self, after_id: int, agent_name: str | None = None, limit: int | None = None) -> Replay: ...

    def last_id(self, agent_name: str | None = None) -> int: ...

    def flush(self) -> None: ...

    def subscribe(self, receiver: Receiver, types: Iterable[str] = events.EVENT_TYPES) -> Subscription: ...

    def signal(self, type: str) -> Signal: ...

    def last_events(self, agent_name: str, n: int) -> list[Event]: ...

    def remove(self, agent_name: str) -> None: ...

    def close(self) -> None: ...


class EventLog:
    """The embedded backend: ids, history files and a bus for every agent of one supervisor.

    ``data_dir`` None keeps history in memory only (for tests and throw-away runs). Not safe to
    share between threads: the whole server runs on one gevent hub.
    """

    def __init__(
        self,
        data_dir: Path | None,
        history_size: int = 10_000,
        max_events: int | None = None,
        memory_bytes: int = 8 << 20,
    ) -> None:
        self.data_dir = data_dir
        self.history_size = history_size
        self.max_events = max_events or None
        self.memory_bytes = memory_bytes
        self._histories: dict[str, AgentHistory] = {}
        self._dirty: set[AgentHistory] = set()
        self._bus = EventBus(self)
        self._published = 0
        self._last_id = 0
        if data_dir is not None:
            agents = datadir.agents_dir(data_dir)
            agents.mkdir(parents=True, exist_ok=True)
            for directory in sorted(agents.iterdir()):
                if directory.is_dir():
                    self._open(directory.name)
        self._open(SUPERVISOR_CHANNEL)
        self._last_id = max((h.last_id for h in self._histories.values()), default=0)

    def _directory(self, channel: str) -> Path | None:
        if self.data_dir is None:
            return None
        if channel == SUPERVISOR_CHANNEL:
            return datadir.supervisor_dir(self.data_dir)
        return datadir.agent_dir(self.data_dir, channel)

    def _open(self, channel: str) -> AgentHistory:
        history = self._histories.get(channel)
        if history is None:
            history = AgentHistory(
                channel, self._directory(channel), self.history_size, self.max_events, memory_bytes=self.memory_bytes
            )
            self._histories[channel] = history
        return history

    @property
    def events_published(self) -> int:
        """Events appended by this process (not those found on disk at start)."""
        return self._published

    # -- the four calls --------------------------------------------------------------------

    def append(self, agent_name: str, type: str, data: dict[str, Any], channel: str | None = None) -> Event:
        """Make an event with the next id, keep it, and send it to every subscriber.

        ``channel`` is where it is kept: the agent's own history unless given (``agent_added``
        and ``agent_removed`` go to :data:`SUPERVISOR_CHANNEL`, so they outlive the agent).
        Subscribers run before this returns; one that raises is logged and skipped.
        """
        self._last_id += 1
        event = Event(self._last_id, type, agent_name, data)
        history = self._open(channel or agent_name)
        history.append(event)
        self._dirty.add(history)
        self._published += 1
        self._bus.publish(event)
        if type == events.COMPLETE:
            # The agent is done: give its file descriptor back (a new run reopens the file).
            self._dirty.discard(history)
            history.close()
        return event

    def read_after(self, after_id: int, agent_name: str | None = None, limit: int | None = None) -> Replay:
        """Events newer than ``after_id`` of one agent, or of every agent (and the supervisor's
        own channel) when ``agent_name`` is None, oldest first. Ids from the future, or older
        than what is retained, give a :class:`Replay` with ``reset`` set. Never yields."""
        histories = self._selected(agent_name)
        if after_id > self._last_id:
            # The reader knows ids this log never issued: its data directory was wiped.
            return Replay(self._merged(histories, 0, limit), reset=True, missed=0, first_available=self._first(histories))
        missed = sum(h.missed_after(after_id) for h in histories)
        events = self._merged(histories, after_id, limit)
        if missed:
            return Replay(events, reset=True, missed=missed, first_available=self._first(histories))
        return Replay(events)

    def last_id(self, agent_name: str | None = None) -> int:
        """Newest id of one agent, or of the whole supervisor; 0 when there is none."""
        if agent_name is None:
            return self._last_id
        history = self._histories.get(agent_name)
        return history.last_id if history is not None else 0

    def flush(self) -> None:
        """Make every appended event durable in its file (cheap when nothing is pending)."""
        while self._dirty:
            self._dirty.pop().flush()

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
        history = self._histories.pop(agent_name, None)  # every folder on disk was opened at start
        if history is not None:
            self._dirty.discard(history)
            history.destroy()

    def close(self) -> None:
        self.flush()
        for history in self._histories.values():
            history.close()

    def _selected(self, agent_name: str | None) -> list[AgentHistory]:
        if agent_name is not None:
            history = self._histories.get(agent_name)
            return [history] if history is not None else []
        return list(self._histories.values())

    @staticmethod
    def _first(histories: list[AgentHistory]) -> int | None:
        firsts = [h.first_id for h in histories if h.first_id is not None]
        return min(firsts) if firsts else None

    @staticmethod
    def _merged(histories: list[AgentHistory], after_id: int, limit: int | None) -> list[Event]:
        if len(histories) == 1:
            return histories[0].read_after(after_id, limit)
        parts = [h.read_after(after_id, limit) for h in histories if h.last_id > after_id]
        merged = heapq.merge(*parts, key=lambda e: e.id)
        if limit is None:
            return list(merged)
        return [e for _, e in zip(range(limit), merged)]
