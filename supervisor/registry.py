"""The supervisor proper: agents by name, created, listed, stopped and removed.

One :class:`Registry` per server (the API keeps it in ``app.extensions``). It owns the
:class:`~supervisor.eventlog.EventLog`, restores the agents a previous supervisor left in the
data directory, and is the one place that enforces the rules across agents: unique names, no
re-creating or deleting a running agent, the maximum number of agents.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import gevent

from . import events
from .agent import AGENT_FILE, Agent
from .config import Config
from .eventlog import SUPERVISOR_CHANNEL, EventLog
from .exceptions import AgentNotFound, AgentRunning, DataDirError, TooManyAgents
from .spec import build_spec, validate_name

log = logging.getLogger(__name__)


def _check_writable(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".probe-"):
            pass
    except OSError as exc:
        raise DataDirError(
            f"data directory {str(data_dir)!r} is not writable ({exc.strerror or exc});"
            " choose another with --data-dir or AGENT_SUPERVISOR_DATA_DIR"
        ) from exc


class Registry:
    """All agents of one supervisor. Methods run in greenlets of one gevent hub.

    ``data_dir`` None (the default is the config's) keeps nothing on disk; pass
    ``persist=False`` for that.
    """

    def __init__(self, config: Config, *, persist: bool = True) -> None:
        self.config = config
        data_dir = Path(config.data_dir) if persist else None
        if data_dir is not None:
            _check_writable(data_dir)
        try:
            self.eventlog = EventLog(
                data_dir, config.history_size, config.history_max_events, config.history_memory_bytes
            )
        except OSError as exc:
            raise DataDirError(f"cannot read history in {str(data_dir)!r}: {exc}") from exc
        self._agents: dict[str, Agent] = {}
        self._stoppers: set[gevent.Greenlet[..., Any]] = set()
        self._restore()

    def _restore(self) -> None:
        for name in self.eventlog.known_agents():
            directory = self.eventlog.agent_directory(name)
            if directory is None:
                continue
            path = directory / AGENT_FILE
            try:
                record = json.loads(path.read_text())
                self._agents[name] = Agent.restore(record, self.eventlog, self.config)
            except FileNotFoundError:
                continue  # history without a definition: a half-deleted agent
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("cannot restore agent %r from %s: %s", name, path, exc)

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
            agent = Agent(spec, self.eventlog, self.config, extractors)
            self._agents[spec.name] = agent
            self.eventlog.append(
                spec.name, events.AGENT_ADDED, {"agent": agent.summary()}, channel=SUPERVISOR_CHANNEL
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

