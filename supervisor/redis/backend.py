"""The Redis Streams backend of the event log: one id sequence and one history for many nodes.

:class:`RedisEventLog` is an :class:`~supervisor.eventlog.EventLogBackend` (the contract is in
:mod:`supervisor.eventlog`); the SSE manager, the registry and the agents use it as they use
the embedded one. What goes where:

- ``append`` queues the event for the node's :class:`~.writer.Writer` and returns without
  yielding; the returned event gets its id when Redis gave it (``lua/append.lua``: the next
  ids of the cluster, ``XADD`` with explicit ids ``N-0`` to the all-agents stream and the
  channel's, ``MAXLEN ~`` retention);
- the node's :class:`~.tailer.Tailer` reads the all-agents stream (every node's events) into
  the :class:`~.window.LocalCopy` and publishes each event on the node's bus: subscribers
  see the events of the whole cluster, once, in id order;
- ``replay`` is a :class:`~.cursor.RedisCursor`: Redis up to where the copy reaches back, then
  the copy; ``reset``/``missed`` for what was trimmed, dropped while Redis was away, or is from
  another epoch;
- ``flush()`` waits (bounded) until what was appended is in Redis and read back by the tailer:
  then readers and subscribers of this node see it, as after the embedded backend's commit.

The node joins the epoch with the highest id it has seen (kept on disk in blocks, like the
embedded backend's id mark, so that a Redis wiped while every node was down still gives ids
above what a client saw), holds a lease (:mod:`.lease`) whose token fences its writes, and
renews it. Redis away: agents go on, events wait in the writer (bounded), ``/healthz`` is
degraded (a storage episode of kind ``redis``), streams only ping; when it is back the writer
empties its queue in order. A resync (a gap, a new epoch, a hole) is sent on :attr:`resyncs`,
which the API connects to its SSE manager: live streams are closed so that their clients resume
into an honest ``reset``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from blinker import Signal

from .. import events
from ..bus import EventBus, Receiver, Subscription
from ..config import without_password
from ..eventlog import SUPERVISOR_CHANNEL, Item, Replay
from ..events import Event
from ..health import StorageHealth
from ..ids import BLOCK as ID_BLOCK
from ..ids import IdReservation
from ..replay import pause
from . import entries, epoch
from .append import Appender, Retention
from .connection import connect
from .cursor import RedisCursor
from .errors import LeaseHeld
from .holes import Holes
from .keys import Keys, check_node_name
from .lease import LEASE_TTL_MS, Lease
from .tailer import BLOCK_MS, Tailer
from .window import LocalCopy
from .writer import RETRY_MAX_S, UNREACHABLE, Writer

log = logging.getLogger(__name__)

#: The node's mark of the highest id it has seen, in its data directory.
FLOOR_FILE = "redis-ids.json"
#: How long ``flush()`` waits for Redis (seconds) before it gives up (Redis away).
FLUSH_TIMEOUT_S = 5.0
#: Events waiting for Redis, at most, while it is away (then the oldest are dropped, counted).
BUFFER_EVENTS = 100_000
DEFAULT_RETENTION = Retention()
#: The storage-health kind of Redis failures.
KIND = "redis"


class RedisEventLog:
    """The event log of one node of a cluster sharing one Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        node: str,
        *,
        data_dir: Path | None = None,
        prefix: str = "as",
        retention: Retention = DEFAULT_RETENTION,
        copy_events: int = 100_000,
        copy_per_channel: int = 10_000,
        buffer_events: int = BUFFER_EVENTS,
        lease_ttl_ms: int = LEASE_TTL_MS,
        health: StorageHealth | None = None,
    ) -> None:
        self.url = url
        self.node = check_node_name(node)
        self.keys = Keys(prefix)
        self.retention = retention
        self.health = health if health is not None else StorageHealth()
        if self.health.notify is None:
            self.health.notify = self._storage_failed
        self.bus = EventBus(self)
        #: Sent (with this log as sender) when live streams must resume into a reset.
        self.resyncs = Signal("live streams must resume: the node's copy started again")
        #: Called when this node's lease was lost (the registry stops the node's agents).
        self.on_fenced: list[Callable[[], None]] = []
        #: Called after the node joined a new epoch (the registry registers its agents again).
        self.on_rejoined: list[Callable[[], None]] = []
        self.client = connect(url, name=f"agent-supervisor:{node}")
        self._tail_client = connect(url, name=f"agent-supervisor:{node}:tail",
                                    socket_timeout=BLOCK_MS / 1000 + 5, max_connections=1)
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        self._mark = IdReservation(data_dir / FLOOR_FILE if data_dir is not None else None, 0,
                                   health=self.health, owner=SUPERVISOR_CHANNEL)
        self._published = 0
        self._reachable = True
        self._closed = False
        self.mine: dict[int, Event] = {}
        #: Agents whose events are not written: a fenced node stops them without a word, since
        #: the other nodes declared them lost (see :mod:`.cluster`).
        self.muted: set[str] = set()
        self.last_of: dict[str, int] = {}
        self._tailed = gevent.event.Event()
        self._fencing: gevent.event.Event | None = None
        self.lease = Lease(self.client, self.keys, self.node, ttl_ms=lease_ttl_ms)
        try:
            self.epoch = epoch.join(self.client, self.keys, self._floor())
            self.lease.acquire()
        except UNREACHABLE as exc:
            self._close_clients()
            from ..exceptions import ConfigError

            raise ConfigError(f"cannot reach Redis at {without_password(url)}: {exc}") from exc
        except LeaseHeld:
            self._close_clients()
            raise
        self.appender = Appender(self.client, self.keys, self.lease, self.epoch.id, retention,
                                 floor=self.epoch.seq)
        self.copy = LocalCopy(self.epoch.seq + 1, copy_events, copy_per_channel)
        self.copy.epoch = self.epoch.id
        self._previous: LocalCopy | None = None
        self.holes = Holes(self.client, self.keys)
        self.holes.load()
        self.writer = Writer(self, buffer_events)
        self.tailer = Tailer(self, self._tail_client, self.epoch.seq)
        self._renewer: gevent.Greenlet[..., Any] = gevent.spawn(self._renew_forever)

    # -- the contract: appending -----------------------------------------------------------

    @property
    def events_published(self) -> int:
        return self._published

    def append(self, agent_name: str, type: str, data: dict[str, Any], channel: str | None = None) -> Event:
        """Queue the event for Redis; its id is assigned when it is written (see the module
        docstring). Never yields."""
        event = Event(0, type, agent_name, data)
        if agent_name in self.muted:
            return event
        self.writer.put(event, channel or agent_name)
        self._published += 1
        return event

    def append_many(self, agent_name: str, items: Iterable[Item]) -> None:
        if agent_name in self.muted:
            return
        put = self.writer.put
        for type, data in items:
            put(Event(0, type, agent_name, data), agent_name)
            self._published += 1

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Wait until what was appended is in Redis and read back by this node (at most
        ``timeout``: with Redis away it stays queued, and this returns)."""
        deadline = time.monotonic() + timeout
        if not self.writer.wait_idle(timeout):
            return
        target = self.writer.written_id
        while self.tailer.position < target and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._tailed.clear()
            self._tailed.wait(left)

    # -- the contract: reading -------------------------------------------------------------

    def replay(self, after_id: int, agent_name: str | None = None) -> RedisCursor:
        return RedisCursor(self, after_id, agent_name)

    def read_after(self, after_id: int, agent_name: str | None = None, limit: int | None = None) -> Replay:
        cursor = self.replay(after_id, agent_name)
        found: list[Event] = []
        while limit is None or len(found) < limit:
            if found:
                pause()
            step = cursor.take(1000 if limit is None else min(1000, limit - len(found)))
            if not step:
                break
            found.extend(step)
        return Replay(found, cursor.reset, cursor.missed, found[0].id if found else None)

    def last_id(self, agent_name: str | None = None) -> int:
        """The newest id this node has read (of one channel: of those it has seen)."""
        if agent_name is None:
            return self.tailer.position
        return self.last_of.get(agent_name, 0)

    def subscribe(self, receiver: Receiver, types: Iterable[str] = events.EVENT_TYPES) -> Subscription:
        return self.bus.subscribe(receiver, types)

    def signal(self, type: str) -> Signal:
        return self.bus.signal(type)

    def receiver_count(self) -> int:
        return self.bus.receiver_count()

    # -- named extras ----------------------------------------------------------------------

    def last_events(self, agent_name: str, n: int) -> list[Event]:
        """The newest ``n`` events of one channel, oldest first (from Redis)."""
        if n <= 0:
            return []
        found = entries.page(self.client.xrevrange(self.keys.channel_stream(agent_name), count=n))
        result = [entries.to_event(entry_id, fields) for entry_id, fields in reversed(found)]
        if result:
            self.last_of[agent_name] = max(self.last_of.get(agent_name, 0), result[-1].id)
        return result

    def remove(self, agent_name: str) -> None:
        """Forget a channel's history: its stream, its numbering (its entries in the
        all-agents stream age out with retention)."""
        self.flush()
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.channel_stream(agent_name))
        pipe.hdel(self.keys.meta, f"n:{agent_name}", f"f:{agent_name}")
        pipe.execute()
        self.copy.forget(agent_name)
        self.last_of.pop(agent_name, None)

    def declared_lost(self) -> dict[str, str]:
        """This node's agents that the cluster registry says are lost (another node declared
        them so when this node's lease expired): name -> reason."""
        from .agents import ClusterAgents

        return {name: str(entry.agent.get("reason") or "") for name, entry in
                ClusterAgents(self.client, self.keys, self.node).all().items()
                if entry.node == self.node and entry.state == "lost"}

    def storage_status(self) -> dict[str, Any]:
        status = self.health.status(self.writer.waiting)
        status["redis"] = {
            "url": without_password(self.url), "node": self.node, "reachable": self._reachable,
            "epoch": self.epoch.id, "epoch_base": self.epoch.base, "tailed_id": self.tailer.position,
            "written_id": self.writer.written_id, "events_waiting": self.writer.waiting,
            "events_dropped": self.writer.dropped_total, "gaps": self.tailer.gaps,
            "copy_events": len(self.copy.all),
        }
        return status

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._renewer.kill(block=False)
        self.tailer.close()
        self.writer.close()
        try:
            self.lease.release()
        except UNREACHABLE:
            pass
        self.health.close()
        self._close_clients()

    def _close_clients(self) -> None:
        self.client.close()
        self._tail_client.close()

    # -- what the writer and the tailer call -----------------------------------------------

    def _floor(self) -> int:
        """The highest id this node may have seen: its mark less a block (the mark is up to a
        block ahead; a new epoch starts a million above the floor)."""
        return max(0, self._mark.reserved - ID_BLOCK)

    def current_epoch(self) -> str | None:
        return epoch.current(self.client, self.keys)

    def seq(self) -> int:
        """The last id Redis has issued."""
        return int(self.client.hget(self.keys.meta, "seq") or 0)

    def rejoin(self) -> None:
        """Join Redis's epoch again (a new one starts if it was wiped or rewound), with a new
        lease when the old one went with it."""
        floor = max(self._floor(), self.tailer.position if hasattr(self, "tailer") else 0, self.appender.floor)
        joined = epoch.join(self.client, self.keys, floor)
        if joined.id != self.epoch.id:
            log.warning("node %s joins epoch %s (ids above %d)", self.node, joined.id, joined.base)
        self.epoch = joined
        self.appender.epoch = joined.id
        self.appender.floor = max(floor, joined.seq)
        if not self.lease.renew():
            try:
                self.lease.acquire()
            except LeaseHeld:
                pass  # another process holds this node's name: its writes will be fenced
        self.holes.load()
        for callback in self.on_rejoined:
            callback()

    def fenced(self) -> None:
        """This node's lease is gone (it was taken for dead): its agents stop, it registers
        again with a new lease. The writer and the renewer may both find out: one does it,
        the other waits for it."""
        if self._fencing is not None:
            self._fencing.wait()
            return
        self._fencing = gevent.event.Event()
        try:
            self._fence()
        finally:
            self._fencing.set()
            self._fencing = None

    def _fence(self) -> None:
        log.error("node %s lost its lease (fenced): its agents are stopped and it registers again", self.node)
        self.writer.cut("refused: this node was fenced")
        for callback in self.on_fenced:
            try:
                callback()
            except Exception:
                log.exception("stopping the agents of a fenced node failed")
        while not self._closed:
            try:
                self.lease.acquire()
                return
            except LeaseHeld:
                gevent.sleep(self.lease.ttl_ms / 3000)

    def written(self, last_id: int) -> None:
        """The writer has Redis's ids up to ``last_id``."""
        self._cover(last_id)

    def tailed(self, position: int) -> None:
        """The tailer read up to ``position``."""
        self._cover(position)
        self._tailed.set()

    def _cover(self, last_id: int) -> None:
        if last_id > self._mark.reserved - ID_BLOCK // 2:
            self._mark.cover(last_id)

    def restart_copy(self, position: int) -> None:
        """Empty the copy, which goes on from ``position + 1``; resync the live streams."""
        if self.copy.epoch != self.epoch.id:
            self._previous = self.copy
        self.copy = LocalCopy(position + 1, self.copy.max_events, self.copy.per_channel)
        self.copy.epoch = self.epoch.id
        self.mine = {n: e for n, e in self.mine.items() if n > position}
        self.resyncs.send(self)

    def holes_changed(self) -> None:
        """A node wrote a hole (events it dropped): know it, and resync the live streams."""
        try:
            self.holes.load()
        except UNREACHABLE as exc:
            self.unreachable(exc)
        self.resyncs.send(self)

    def missed_in_previous(self, after_id: int, channel: str | None) -> int:
        """What this node saw of the previous epoch after ``after_id`` (a lower bound of what
        a reader from it lost: other nodes may have written more that this one never read)."""
        previous = self._previous
        if previous is None:
            return 0
        window = previous.all if channel is None else previous.channel(channel)
        return len(window.after(after_id, len(window)))

    def unreachable(self, exc: BaseException) -> None:
        """Redis cannot be reached now: ``/healthz`` says so (once per episode)."""
        if self._closed:
            return
        if self._reachable:
            self._reachable = False
            error = exc if isinstance(exc, OSError) else ConnectionError(str(exc) or type(exc).__name__)
            self.health.failed(SUPERVISOR_CHANNEL, KIND, without_password(self.url), error)

    def reachable(self) -> None:
        if not self._reachable:
            self._reachable = True
            self.health.recovered(SUPERVISOR_CHANNEL, KIND)

    def _storage_failed(self, owner: str, message: str) -> None:
        self.append(owner, events.ERROR, {"code": "storage_failed", "message": message})

    def _renew_forever(self) -> None:
        period = self.lease.ttl_ms / 3000
        while not self._closed:
            gevent.sleep(period)
            try:
                if self.lease.renew():
                    continue
                if self.current_epoch() != self.epoch.id:
                    self.rejoin()  # wiped: nobody took this node for dead
                else:
                    self.fenced()
            except UNREACHABLE as exc:
                self.unreachable(exc)
                gevent.sleep(min(period, RETRY_MAX_S))
            except Exception:
                log.exception("renewing the lease of node %s failed", self.node)
