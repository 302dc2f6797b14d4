"""The one door every event goes through: give it an id, keep it in history, publish it.

This is the seam the design note asks for. :class:`EventLog` is the embedded backend (ids from a
counter, history in :class:`~supervisor.history.AgentHistory` files, publishing on the blinker
signals); a distributed backend (Redis Streams: ``XADD`` assigns the id and stores in one step,
``XREAD`` feeds subscribers) would implement the same four calls, ``append``, ``read_after``,
``last_id`` and ``flush``, and neither the process wrapper nor the SSE manager would change.
"""
from __future__ import annotations

import heapq
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events, signals
from .events import Event
from .history import AgentHistory

log = logging.getLogger(__name__)

#: History channel of the supervisor itself (``agent_added`` / ``agent_removed``); not an agent
#: name, since agent names cannot start with ``@``.
SUPERVISOR_CHANNEL = "@supervisor"


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


class EventLog:
    """Ids, history and publishing for every agent of one supervisor.

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
        self.events_published = 0
        self._last_id = 0
        if data_dir is not None:
            (data_dir / "agents").mkdir(parents=True, exist_ok=True)
            for directory in sorted((data_dir / "agents").iterdir()):
                if directory.is_dir():
                    self._open(directory.name)
        self._open(SUPERVISOR_CHANNEL)
        self._last_id = max((h.last_id for h in self._histories.values()), default=0)

    def _directory(self, channel: str) -> Path | None:
        if self.data_dir is None:
            return None
        if channel == SUPERVISOR_CHANNEL:
            return self.data_dir / "supervisor"
        return self.data_dir / "agents" / channel

    def _open(self, channel: str) -> AgentHistory:
        history = self._histories.get(channel)
        if history is None:
            history = AgentHistory(
                channel, self._directory(channel), self.history_size, self.max_events, memory_bytes=self.memory_bytes
            )
            self._histories[channel] = history
        return history

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
        self.events_published += 1
        signals.send_safely(signals.BY_TYPE[type], agent_name, event)
        if type == events.COMPLETE:
            # The agent is done: give its file descriptor back (a new run reopens the file).
            self._dirty.discard(history)
            history.close()
        return event

    def read_after(self, after_id: int, agent_name: str | None = None, limit: int | None = None) -> Replay:
        """Events newer than ``after_id`` of one agent, or of every agent (and the supervisor's
        own channel) when ``agent_name`` is None, oldest first. Ids from the future, or older
        than what is retained, give a :class:`Replay` with ``reset`` set."""
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

    # -- bookkeeping -----------------------------------------------------------------------

    def history(self, agent_name: str) -> AgentHistory:
        return self._open(agent_name)

    def known_agents(self) -> list[str]:
        """Agents that have a history (from this run or a previous one), in name order."""
        return sorted(name for name in self._histories if name != SUPERVISOR_CHANNEL)

    def agent_directory(self, agent_name: str) -> Path | None:
        return self._directory(agent_name)

    def remove(self, agent_name: str) -> None:
        """Forget an agent's history, on disk too."""
        history = self._histories.pop(agent_name, None)
        if history is not None:
            self._dirty.discard(history)
            history.close()
        directory = self._directory(agent_name)
        if directory is not None and directory.exists():
            shutil.rmtree(directory, ignore_errors=True)

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
