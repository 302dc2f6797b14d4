"""The supervisor proper: agents by name, created, listed, stopped and removed.

One :class:`Registry` per server (the API keeps it in ``app.extensions``). It owns the
:class:`~supervisor.eventlog.EventLog`, restores the agents a previous supervisor left in the
data directory, and is the one place that enforces the rules across agents: unique names, no
re-creating or deleting a running agent, the maximum number of agents.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent

from . import datadir, events
from .agent import Agent
from .config import Config
from .eventlog import SUPERVISOR_CHANNEL, EventLog, EventLogBackend
from .exceptions import AgentNotFound, AgentRunning, DataDirError, TooManyAgents
from .spec import build_spec, validate_name
from .store import AgentRecord, AgentStore

log = logging.getLogger(__name__)

#: How an agent is shown to the outside world: the API's agent JSON. ``agent_added`` carries
#: it, so that a consumer of the all-agents stream gets what ``GET /api/agents/<name>`` gives.
Describe = Callable[[AgentRecord], dict[str, Any]]


def _name_only(record: AgentRecord) -> dict[str, Any]:
    return {"name": record.name}


class Registry:
    """All agents of one supervisor. Methods run in greenlets of one gevent hub.

    Keeps its agents' events in ``eventlog`` (default: the embedded :class:`EventLog` on the
    config's data directory) and their records in ``store``; ``persist=False`` keeps nothing on
    disk. ``describe`` renders an agent for its ``agent_added`` event (the API passes its agent
    JSON; by default only the name).
    """

    def __init__(self, config: Config, *, persist: bool = True, eventlog: EventLogBackend | None = None,
                 store: AgentStore | None = None, describe: Describe | None = None) -> None:
        self.config = config
        data_dir = Path(config.data_dir) if persist else None
        if data_dir is not None:
            datadir.check_writable(data_dir)
        if eventlog is None:
            try:
                eventlog = EventLog(
                    data_dir, config.history_size, config.history_max_events, config.history_memory_bytes
                )
            except OSError as exc:
                raise DataDirError(f"cannot read history in {str(data_dir)!r}: {exc}") from exc
        self.eventlog: EventLogBackend = eventlog
        self.store = store if store is not None else AgentStore(data_dir)
        self.describe: Describe = describe or _name_only
        self._agents: dict[str, Agent] = {}
        self._stoppers: set[gevent.Greenlet[..., Any]] = set()
        self._restore()

    def _restore(self) -> None:
        for name in self.store.names():
            try:
                record = self.store.load(name)
                self._agents[name] = Agent.restore(record, self.eventlog, self.config, self.store)
            except FileNotFoundError:
                continue  # gone since it was listed
            except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged record
                log.warning("cannot restore agent %r: %s", name, exc)

    # -- queries ---------------------------------------------------------------------------

    def get(self, name: str) -> Agent:
        """The agent called ``name``; raises :class:`AgentNotFound`."""
        agent = self._agents.get(name)
        if agent is None:
            raise AgentNotFound(f"no agent named {name[:80]!r}")
        return agent

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def list(self) -> list[Agent]:
        return [self._agents[name] for name in sorted(self._agents)]

    # -- commands --------------------------------------------------------------------------

    def create(self, body: Any, start: bool = True) -> Agent:
        """Define an agent from a user's request (see :func:`~supervisor.spec.build_spec`) and
        start it. Re-using the name of an agent that has ended starts a new run of it, which
        continues its history; re-using the name of an active one raises :class:`AgentRunning`.
        """
        spec, extractors = build_spec(body, self.config)
        agent = self._agents.get(spec.name)
        if agent is not None:
            if agent.active:
                raise AgentRunning(f"agent {spec.name!r} is {agent.state}; stop it first")
            agent.spec, agent.extractors = spec, extractors
        else:
            if len(self._agents) >= self.config.max_agents:
                raise TooManyAgents(
                    f"{self.config.max_agents} agents are defined; delete some or raise max_agents"
                )
            agent = Agent(spec, self.eventlog, self.config, extractors, self.store)
            self._agents[spec.name] = agent
            self.eventlog.append(
                spec.name, events.AGENT_ADDED, {"agent": self.describe(agent.record())}, channel=SUPERVISOR_CHANNEL
            )
        if start:
            agent.restarts = 0
            agent.start()
        else:
            agent.save()
        return agent

    def stop(self, name: str, grace: float | None = None, wait: bool = False) -> Agent:
        """Ask an agent to stop. Returns at once (the stop runs in its own greenlet) unless
        ``wait``; stopping an agent that is not running does nothing."""
        agent = self.get(name)
        self._in_background(agent.stop, grace, wait=wait)
        return agent

    def restart(self, name: str, wait: bool = False) -> Agent:
        """End the agent's run if it has one and start a new one."""
        agent = self.get(name)
        self._in_background(agent.restart, wait=wait)
        return agent

    def _in_background(self, func: Any, *args: Any, wait: bool) -> None:
        greenlet = gevent.spawn(func, *args)
        self._stoppers.add(greenlet)
        greenlet.link(self._stoppers.discard)
        if wait:
            greenlet.get()

    def remove(self, name: str) -> None:
        """Delete an agent that has ended, with its history. Raises :class:`AgentRunning`."""
        validate_name(name)
        agent = self.get(name)
        if agent.active:
            raise AgentRunning(f"agent {name!r} is {agent.state}; stop it before deleting it")
        del self._agents[name]
        self.eventlog.remove(name)
        self.store.remove(name)
        self.eventlog.append(name, events.AGENT_REMOVED, {"name": name}, channel=SUPERVISOR_CHANNEL)

    def shutdown(self, grace: float | None = None) -> None:
        """Stop every active agent (in parallel, each with its grace period) and close history."""
        stoppers = [gevent.spawn(agent.stop, grace) for agent in self._agents.values() if agent.active]
        gevent.joinall(stoppers + list(self._stoppers))
        self.eventlog.close()

    def stats(self) -> dict[str, int]:
        return {
            "total_agents": len(self._agents),
            "active_agents": sum(1 for a in self._agents.values() if a.active),
            "events_published": self.eventlog.events_published,
            "last_event_id": self.eventlog.last_id(),
        }

