"""A registry among many: what a node knows of the other nodes' agents, and does for them.

:class:`Cluster` joins one node's :class:`~supervisor.registry.Registry` to the others through
Redis. It keeps:

- **the view**: every other node's agents, their owner and their agent JSON, in memory, so that
  listing, showing and streaming them never waits on Redis. It is loaded from the cluster
  registry (:mod:`.agents`) at start and at every watch, and kept current between watches by
  the events every node's tailer reads anyway (``agent_added``, ``state``, ``agent_removed``);
- **this node's entries**: the JSON of its own agents, written to the cluster registry after
  each change of state (in one greenlet, batched), and names claimed there before an agent is
  defined (unique across the cluster);
- **the control path** (:mod:`.control`): requests for this node's agents from other nodes run
  here against the registry; requests for theirs go to their owners;
- **the watch**: every third of the lease TTL, the leases of the nodes that own agents. A node
  whose lease is gone had its active agents moved to ``lost`` by one script (:mod:`.agents`),
  for exactly one watcher, which appends their ``state`` and ``complete`` events;
- **fencing**: when this node learns that its own lease was gone (it was paused or cut off
  longer than the TTL, and the others may have declared its agents lost), it stops its agents
  without a word on their streams (what was said of them, ``lost``, stands) and registers again.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from .. import events
from ..events import Event
from ..exceptions import AgentNotFound, InvalidRequest
from ..states import ACTIVE_STATES, AgentState
from .agents import ClusterAgents, Entry
from .control import Control
from .writer import RETRY_MAX_S, UNREACHABLE

if TYPE_CHECKING:
    from ..registry import Registry
    from .backend import RedisEventLog

log = logging.getLogger(__name__)

_ACTIVE = sorted(state.value for state in ACTIVE_STATES)
#: What a dead node's agents may be in to be declared lost: active, or claimed and never written
#: (the node died between defining the agent and writing its entry).
_REAPABLE = [*_ACTIVE, ""]


def _last(entry: Entry) -> int:
    return int(entry.agent.get("last_event_id") or 0)
#: The agent JSON fields a ``state`` event carries.
_STATE_FIELDS = ("state", "run", "pid", "exit_code", "signal", "reason")


class Cluster:
    """The cluster side of ``registry``, whose event log is ``log`` (see the module docstring)."""

    def __init__(self, registry: Registry, log: RedisEventLog, control_timeout_s: float) -> None:
        self.registry = registry
        self.log = log
        self.node = log.node
        self.agents = ClusterAgents(log.client, log.keys, log.node)
        self.view: dict[str, Entry] = {}
        #: Agents of this node stopped because its lease was gone: their streams say no more.
        self.muted: set[str] = log.muted
        self._dirty: set[str] = set()
        self._wake = gevent.event.Event()
        self.reaped_total = 0
        self.control = Control(log.url, log.keys, log.node, self._handle, control_timeout_s)
        self._subscription = log.subscribe(self._on_event, types=(
            events.AGENT_ADDED, events.AGENT_REMOVED, events.STATE))
        log.on_fenced.append(self._fenced)
        log.on_rejoined.append(self.publish_all)
        self._load()
        self.publish_all()
        self._greenlets = [gevent.spawn(self._publish_forever), gevent.spawn(self._watch_forever)]

    def close(self) -> None:
        """Write this node's agents' last states (they stay listed, on a node that is gone),
        and leave."""
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        try:
            self.agents.put((agent.name, self.registry.describe(agent.record()))
                            for agent in self.registry.list() if agent.name not in self.muted)
        except UNREACHABLE as exc:
            log.warning("the last states of this node's agents could not be written: %s", exc)
        self._subscription.close()
        self.control.close()

    # -- what the registry and the API ask -------------------------------------------------

    def owner(self, name: str) -> str | None:
        """The node of an agent of another node (None: not known as another node's)."""
        entry = self.view.get(name)
        return entry.node if entry is not None else None

    def active(self, name: str) -> bool:
        entry = self.view.get(name)
        return entry is not None and entry.state in _ACTIVE

    def remote(self, name: str) -> dict[str, Any]:
        """The agent JSON of another node's agent; :class:`AgentNotFound` if none."""
        entry = self.view.get(name)
        if entry is None:
            raise AgentNotFound(f"no agent named {name[:80]!r}")
        return {**entry.agent, "last_event_id": max(int(entry.agent.get("last_event_id") or 0),
                                                     self.log.last_id(name))}

    def remote_names(self) -> list[str]:
        return sorted(self.view)

    def claim(self, name: str, agent: dict[str, Any]) -> None:
        """Take the name for this node before defining the agent (raises ``NameTaken``)."""
        self.agents.claim(name, agent)
        self.view.pop(name, None)
        self.muted.discard(name)  # defined again: its streams speak again

    def release(self, name: str) -> None:
        self.agents.release(name)

    def request(self, node: str, op: str, name: str, args: dict[str, Any]) -> tuple[int, Any]:
        return self.control.request(node, op, name, args)

    def changed(self, name: str) -> None:
        """A local agent changed: its entry is written soon."""
        self._dirty.add(name)
        if not self._wake.is_set():
            self._wake.set()

    def publish_all(self) -> None:
        for agent in self.registry.list():
            self.changed(agent.name)

    # -- requests from other nodes ---------------------------------------------------------

    def _handle(self, op: str, name: str, args: dict[str, Any]) -> tuple[int, Any]:
        registry = self.registry
        if op == "create":
            agent = registry.create(args)
            return 201, registry.describe(agent.record())
        if op == "stop":
            registry.stop(name, args.get("grace_s"))
            return 202, registry.describe(registry.get(name).record())
        if op == "restart":
            registry.restart(name)
            return 202, registry.describe(registry.get(name).record())
        if op == "input":
            registry.get(name).write(str(args.get("data", "")))
            return 204, None
        if op == "resize":
            registry.get(name).resize(int(args["cols"]), int(args["rows"]))
            return 204, None
        if op == "delete":
            registry.remove(name)
            return 204, None
        raise InvalidRequest(f"unknown control operation {op!r}")

    # -- the view --------------------------------------------------------------------------

    def _load(self) -> None:
        """The other nodes' agents from the cluster registry; where an event told this node
        something newer than the registry says yet (the owner writes it a moment later), the
        newer stays."""
        old = self.view
        view = {}
        for name, entry in self.agents.all().items():
            if entry.node == self.node:
                continue
            known = old.get(name)
            newer = known is not None and known.node == entry.node and _last(known) > _last(entry)
            view[name] = known if newer and known is not None else entry
        self.view = view

    def _on_event(self, sender: object, event: Event) -> None:
        name = event.agent_name
        if name in self.registry:
            if event.type == events.STATE:
                self.changed(name)
            return
        if event.type == events.AGENT_ADDED:
            agent = event.data.get("agent")
            if isinstance(agent, dict) and isinstance(agent.get("node"), str) and agent["node"] != self.node:
                self.view[name] = Entry(agent["node"], dict(agent))
        elif event.type == events.AGENT_REMOVED:
            self.view.pop(name, None)
        elif event.type == events.STATE:
            entry = self.view.get(name)
            if entry is not None:
                for key in _STATE_FIELDS:
                    if key in event.data:
                        entry.agent[key] = event.data[key]
                entry.agent["last_event_id"] = event.id

    # -- greenlets -------------------------------------------------------------------------

    def _publish_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            gevent.sleep(0.05)  # a burst of changes is one write
            dirty, self._dirty = self._dirty, set()
            entries = []
            for name in dirty:
                if name in self.registry and name not in self.muted:
                    entries.append((name, self.registry.describe(self.registry.get(name).record())))
            try:
                self.agents.put(entries)
            except UNREACHABLE:
                self._dirty |= dirty  # again once Redis is back
                gevent.sleep(RETRY_MAX_S)
                self._wake.set()
            except Exception:
                log.exception("writing this node's agents to the cluster registry failed")

    def _watch_forever(self) -> None:
        period = self.log.lease.ttl_ms / 3000
        while True:
            gevent.sleep(period)
            try:
                self.watch()
            except UNREACHABLE:
                continue
            except Exception:
                log.exception("watching the other nodes failed")

    def watch(self) -> None:
        """Reload the view; reap the agents of nodes whose lease is gone."""
        self._load()
        owners = {entry.node for entry in self.view.values() if (entry.state or "") in _REAPABLE}
        for node, alive in self.agents.leases(owners).items():
            if not alive:
                self._reap(node)

    def _reap(self, node: str) -> None:
        reason = f"node {node!r} stopped renewing its lease: its agents' fate is unknown"
        moved = self.agents.reap(node, reason, _REAPABLE)
        for name, entry in sorted(moved.items()):
            # RUNNING -> LOST on behalf of the dead owner, once (the script gave them to us).
            agent = entry.agent
            self.log.append(name, events.STATE, {
                "state": AgentState.LOST.value, "previous": agent.get("state"), "run": agent.get("run"),
                "pid": agent.get("pid"), "exit_code": None, "signal": None, "reason": reason, "node": node,
            })
            self.log.append(name, events.COMPLETE, {
                "state": AgentState.LOST.value, "run": agent.get("run"), "exit_code": None, "signal": None,
                "duration_s": agent.get("duration_s"), "lines": agent.get("lines"),
                "extractions": agent.get("extractions"), "reason": reason, "ended": 0, "node": node,
            })
            self.view[name] = Entry(node, {**agent, "state": AgentState.LOST.value, "reason": reason})
        if moved:
            self.reaped_total += len(moved)
            log.warning("node %s is gone (no lease): %d of its agents are lost: %s", node, len(moved),
                        ", ".join(sorted(moved)))

    # -- this node fenced ------------------------------------------------------------------

    def _fenced(self) -> None:
        """Stop every active agent of this node, silently: the others said ``lost`` of them."""
        active = [agent for agent in self.registry.list() if agent.active]
        self.muted.update(agent.name for agent in active)
        for agent in active:
            gevent.spawn(agent.stop, 0)
        deadline = time.monotonic() + 10
        while any(agent.active for agent in active) and time.monotonic() < deadline:
            gevent.sleep(0.05)
