"""The supervisor proper: agents by name, created, listed, stopped and removed.

One :class:`Registry` per server (the API keeps it in ``app.extensions``). It owns the
:class:`~supervisor.eventlog.EventLog`, the :class:`~supervisor.containment.Containment` of
every agent's processes and the :class:`~supervisor.containment.sampler.Sampler` of what they
cost, and holds the data directory's lock (one live server per data directory); it restores the
agents a previous supervisor left in the data directory (ending first what that one's live runs
left running, if it crashed), and is the one place that enforces the rules across agents:
unique names, no re-creating or deleting a running agent, the maximum number of agents,
nothing new defined that cannot be kept (507 when the disk is full). A record that cannot be
read does not hide its agent: it is listed as ``lost``, with the reason, and its history.
:meth:`Registry.shutdown` ends all of it.

An agent comes from the API (``POST /api/agents``) or from the config file (``[agents.NAME]``,
see :mod:`supervisor.config_agents` and :mod:`supervisor.reload`); the API neither redefines nor
deletes the latter. Both are defined the same way (:meth:`Registry.define`): a config agent
whose record cannot be written is refused like an API one, and its reload says so.
:meth:`Registry.boot` is the start of a server: the config file's agents (supervisord's
autostart), then the API agents that were active when the last server stopped and asked to be
kept running (``restart`` always or on-failure: PM2's resurrect). A run-once agent (``restart``
never) is not run twice: it stays as the last server left it.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent

from . import datadir, events, files
from .agent import Agent
from .config import Config
from .config_agents import ConfigAgent
from .containment import Containment, server_id_for
from .containment.recovery import Recovered, end_survivors, recover
from .containment.sampler import Sampler
from .eventlog import SUPERVISOR_CHANNEL, EventLog, EventLogBackend
from .exceptions import (
    AgentFromConfig,
    AgentNotFound,
    AgentRunning,
    ConfigError,
    DataDirError,
    StorageFailed,
    StorageFull,
    SupervisorError,
    TooManyAgents,
)
from .extractors import ExtractorSet
from .health import StorageHealth
from .reload import apply as apply_config
from .spec import AgentSpec, build_spec, validate_name
from .states import ACTIVE_STATES, AgentState
from .store import AgentRecord, AgentStore

if TYPE_CHECKING:
    from .redis.cluster import Cluster

log = logging.getLogger(__name__)

#: How an agent is shown to the outside world: the API's agent JSON. ``agent_added`` carries
#: it, so that a consumer of the all-agents stream gets what ``GET /api/agents/<name>`` gives.
Describe = Callable[[AgentRecord], dict[str, Any]]


def _name_only(record: AgentRecord) -> dict[str, Any]:
    return {"name": record.name}


def _cluster_log(config: Config, data_dir: Path | None) -> EventLogBackend:
    """The Redis backend of ``config`` (the redis extra is imported only for it)."""
    try:
        from .redis.append import Retention
        from .redis.backend import RedisEventLog
    except ImportError as exc:
        raise ConfigError(f"redis_url needs the redis extra ({exc}): pip install 'agent-supervisor[redis]'") from exc

    retention = Retention(all_events=max(100_000, 10 * config.history_size), per_channel=config.history_size)
    return RedisEventLog(config.redis_url or "", config.node, data_dir=data_dir, retention=retention,
                         copy_per_channel=config.history_size, buffer_events=config.redis_buffer_events,
                         lease_ttl_ms=round(config.lease_ttl_s * 1000))


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
        self._lock: datadir.DataDirLock | None = None
        if data_dir is not None:
            datadir.check_writable(data_dir)
            self._lock = datadir.lock(data_dir)
        try:
            # First: a containment that cannot be had (containment = cgroup without one) stops the
            # start. One per data directory: the next server on it finds what this one left.
            self.containment = Containment(config.containment, server_id_for(data_dir))
            durable = config.durability == "fsync"
            if eventlog is None and config.redis_url:
                eventlog = _cluster_log(config, data_dir)
            if eventlog is None:
                try:
                    eventlog = EventLog(
                        data_dir, config.history_size, config.history_max_events, config.history_memory_bytes,
                        durability=config.durability,
                    )
                except OSError as exc:
                    self.containment.close()
                    raise DataDirError(f"cannot read history in {str(data_dir)!r}: {exc}") from exc
            self.eventlog: EventLogBackend = eventlog
            #: Where every storage failure is reported (``/healthz``, ``/api/sse/stats``).
            self.storage: StorageHealth = eventlog.health
            self.store = store if store is not None else AgentStore(data_dir, self.storage, durable)
            self.describe: Describe = describe or _name_only
            self.sampler = Sampler(self.containment)
            self._agents: dict[str, Agent] = {}
            self._stoppers: set[gevent.Greenlet[..., Any]] = set()
            self._cuts_of_removed = 0  # extraction cuts counted for agents deleted since
            #: The other nodes of a cluster (the Redis backend), else None.
            self.cluster: Cluster | None = None
            self._restore()
            if config.redis_url and hasattr(eventlog, "lease"):
                from .redis.cluster import Cluster

                self.cluster = Cluster(self, eventlog, config.control_timeout_s)  # type: ignore[arg-type]
            self.sampler.start()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _restore(self) -> None:
        records: dict[str, AgentRecord] = {}
        for name in self.store.names():
            try:
                records[name] = self.store.load(name)
            except FileNotFoundError:
                continue  # gone since it was listed
            except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged record
                self._agents[name] = self._unreadable(name, exc)
        recovered = self._end_what_a_crash_left(records)
        for name, reason in self._declared_lost().items():
            record = records.get(name)
            if record is not None and record.state in {state.value for state in ACTIVE_STATES}:
                # Another node of the cluster said ``lost`` (and ``complete``) of it when this
                # node's lease expired: that stands, and is not said twice.
                records[name] = dataclasses.replace(record, state=AgentState.LOST.value, reason=reason)
                try:
                    self.store.save(records[name])
                except OSError:
                    pass  # reported to the storage health; the agent is listed all the same
        for name, record in records.items():
            try:
                self._agents[name] = Agent.restore(record, self.eventlog, self.config, self.store,
                                                   self.containment, recovered.get(name))
            except (OSError, ValueError, KeyError, TypeError) as exc:  # fields that cannot be restored
                self._agents[name] = self._unreadable(name, exc)

    def _declared_lost(self) -> dict[str, str]:
        """This node's agents that the cluster declared lost (name -> reason); none when alone."""
        lost = getattr(self.eventlog, "declared_lost", None)  # the Redis backend's
        return lost() if lost is not None else {}

    def _end_what_a_crash_left(self, records: dict[str, AgentRecord]) -> dict[str, Recovered]:
        """Agents that were live when the last server died may have processes still running:
        end them now, before anything can start a second copy (each with its own leftovers
        setting and grace, else the server's)."""
        active = {state.value for state in ACTIVE_STATES}
        live = {name: record for name, record in records.items() if record.state in active}
        found = recover(self.containment, {name: record.processes.live_run if record.processes else None
                                           for name, record in live.items()})
        jobs = {}
        for name, scope in found.items():
            if scope is not None:
                spec = live[name].spec
                grace = spec.stop_grace_s if spec.stop_grace_s is not None else self.config.stop_grace_s
                jobs[name] = (scope, spec.leftovers or self.config.leftovers, grace)
        return end_survivors(self.containment, jobs)

    def _unreadable(self, name: str, exc: BaseException) -> Agent:
        """An agent whose record cannot be read is listed anyway, as ``lost``, with its history:
        the record is left as it is (for whoever repairs it); defining the agent again runs it."""
        path = self.store.record_path(name)
        why = files.describe(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        log.warning("%s cannot be read (%s); agent %r is listed as lost, with its history", path, why, name)
        record = AgentRecord(spec=AgentSpec(name=name, command=[]), state=AgentState.LOST.value,
                             reason=f"its record ({path}) cannot be read: {why}; define the agent again to run it")
        return Agent.restore(record, self.eventlog, self.config, self.store, self.containment)

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
        continues its history; re-using the name of an active one raises :class:`AgentRunning`,
        that of a config file's agent :class:`AgentFromConfig`.
        """
        spec, extractors = build_spec(body, self.config)
        existing = self._agents.get(spec.name)
        if existing is not None and existing.origin == "config":
            raise AgentFromConfig(f"agent {spec.name!r} is defined in the config file ([agents.{spec.name}]):"
                                  " change it there and run `agent-supervisor reload`")
        return self.define(spec, extractors, start=start)

    def define(self, spec: AgentSpec, extractors: ExtractorSet, *, origin: str = "api", autostart: bool = True,
               start: bool = True, reason: str = "started") -> Agent:
        """Define (or redefine, if it has ended) the agent of a checked ``spec``; start it
        unless ``start`` is false. Raises :class:`AgentRunning` and :class:`TooManyAgents`; in a
        cluster, ``NameTaken`` when another node has an agent of that name."""
        if self.cluster is None:
            return self._define(spec, extractors, origin, autostart, start, reason)
        claimed = spec.name not in self._agents
        self.cluster.claim(spec.name, {"name": spec.name, "command": spec.command})  # unique in the cluster
        try:
            agent = self._define(spec, extractors, origin, autostart, start, reason)
        except BaseException:
            if claimed and spec.name not in self._agents:
                self.cluster.release(spec.name)  # nothing was defined: the name is free again
            raise
        self.cluster.changed(spec.name)
        return agent

    def _define(self, spec: AgentSpec, extractors: ExtractorSet, origin: str, autostart: bool, start: bool,
                reason: str) -> Agent:
        agent = self._agents.get(spec.name)
        if agent is not None:
            if agent.active:
                raise AgentRunning(f"agent {spec.name!r} is {agent.state}; stop it first")
            self._keep(dataclasses.replace(agent.record(), spec=spec, origin=origin, autostart=autostart))
            agent.spec, agent.extractors = spec, extractors
            agent.origin, agent.autostart = origin, autostart
        else:
            if len(self._agents) >= self.config.max_agents:
                raise TooManyAgents(
                    f"{self.config.max_agents} agents are defined; delete some or raise max_agents"
                )
            agent = Agent(spec, self.eventlog, self.config, extractors, self.store, self.containment)
            agent.origin, agent.autostart = origin, autostart
            # Its record is kept first, or the definition is refused (507 storage_full) with
            # nothing made; registered once its agent_added is appended, and taken back if its
            # first run fails before a process exists: a failure leaves no half-made agent
            # (state null, "starting" for ever, undeletable) behind.
            self._keep(agent.record())
            self.eventlog.append(
                spec.name, events.AGENT_ADDED, {"agent": self.describe(agent.record())}, channel=SUPERVISOR_CHANNEL
            )
            self._agents[spec.name] = agent
            try:
                self._begin(agent, start, reason)
            except Exception:
                if agent.pid is None:
                    self._take_back(spec.name)
                raise
            return agent
        self._begin(agent, start, reason)
        return agent

    def _begin(self, agent: Agent, start: bool, reason: str) -> None:
        if start:
            agent.restarts = 0
            agent.start(reason)
        else:
            agent.save()

    def _take_back(self, name: str) -> None:
        """Undo the creation of agent ``name``, which has no process: as if removed."""
        del self._agents[name]
        self.eventlog.remove(name)
        self.store.remove(name)
        self.eventlog.append(name, events.AGENT_REMOVED, {"name": name}, channel=SUPERVISOR_CHANNEL)

    def _keep(self, record: AgentRecord) -> None:
        """Save the record of an agent about to be (re)defined, or refuse: nothing is half
        created when the data directory cannot take it."""
        existed = self.store.exists(record.name)
        try:
            self.store.save(record)
        except OSError as exc:
            if not existed:
                self.store.remove(record.name)
            where = self.store.record_path(record.name)
            error: type[SupervisorError] = StorageFull if exc.errno in files.FULL else StorageFailed
            raise error(f"agent {record.name!r} cannot be kept: writing {where} failed ({files.describe(exc)})"
                        + ("; free some space in the data directory" if error is StorageFull else "")) from exc

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

    def remove(self, name: str, *, from_config: bool = False) -> None:
        """Delete an agent that has ended, with its history. Raises :class:`AgentRunning`, and
        :class:`AgentFromConfig` for a config file's agent unless ``from_config`` (a reload)."""
        validate_name(name)
        agent = self.get(name)
        if agent.origin == "config" and not from_config:
            raise AgentFromConfig(f"agent {name!r} is defined in the config file ([agents.{name}]): remove it"
                                  " there and run `agent-supervisor reload`")
        if agent.active:
            raise AgentRunning(f"agent {name!r} is {agent.state}; stop it before deleting it")
        del self._agents[name]
        self._cuts_of_removed += agent.cuts_counted
        if self.cluster is not None:
            self.cluster.release(name)
        self.eventlog.remove(name)
        self.store.remove(name)
        self.eventlog.append(name, events.AGENT_REMOVED, {"name": name}, channel=SUPERVISOR_CHANNEL)

    def extractions_cut(self) -> int:
        """Extraction cuts counted since this registry started, over every agent and run,
        deleted agents included: it never goes down (a restart of an agent or its removal
        does not take back what was cut)."""
        return self._cuts_of_removed + sum(agent.cuts_counted for agent in self._agents.values())

    def boot(self, config_agents: dict[str, ConfigAgent]) -> None:
        """The start of a server: define and start the config file's agents (``config_agents``,
        from :func:`supervisor.config_agents.build`), then resume the API agents that the last
        server left active and that asked to be kept running. Call once, after ``describe`` is
        set (their ``agent_added`` events use it)."""
        apply_config(self, config_agents, boot=True)
        for agent in self.list():
            if agent.origin != "api" or agent.active:
                continue
            lost = agent.state is AgentState.LOST
            if agent.resume or (lost and agent.spec.restart.mode != "never"):
                why = "the last server died while it ran" if lost else "it ran when the last server stopped"
                agent.restarts = 0
                agent.start(f"resumed: {why} (restart {agent.spec.restart.mode})")

    def shutdown(self, grace: float | None = None) -> None:
        """Stop every active agent (in parallel, each with its grace period), the sampler, give
        back the containment's cgroups and close history. An API agent that asked to be kept
        running (restart always or on-failure) is marked to be resumed by the next server."""
        for agent in self._agents.values():
            if agent.active and agent.origin == "api" and agent.spec.restart.mode != "never":
                agent.resume = True
        stoppers = [gevent.spawn(agent.stop, grace) for agent in self._agents.values() if agent.active]
        gevent.joinall(stoppers + list(self._stoppers))
        if self.cluster is not None:
            self.cluster.close()
        self.sampler.stop()
        self.containment.close()
        self.eventlog.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def stats(self) -> dict[str, int]:
        return {
            "total_agents": len(self._agents),
            "active_agents": sum(1 for a in self._agents.values() if a.active),
            "events_published": self.eventlog.events_published,
            "last_event_id": self.eventlog.last_id(),
        }

    def containment_stats(self) -> dict[str, Any]:
        """The containment in force, the runs it watches, and what sampling them costs."""
        return {**self.containment.describe(), "runs_tracked": len(self.containment.scopes()),
                "sampler": self.sampler.cost.to_dict()}

