"""Reloading the config file's agents, the way ``supervisorctl update`` does.

``agent-supervisor reload``, ``POST /api/reload`` and SIGHUP read the file again and apply the
difference between its ``[agents.NAME]`` tables and the agents that came from it:

- an agent new in the file is defined, and started if its ``autostart`` is true;
- one no longer in the file is stopped and deleted, with its history (``rm --force``);
- one whose table changed (its definition or ``autostart``) is stopped, redefined, and started
  again if ``autostart``;
- an unchanged one is left as it is, and so is every agent created over the API.

A file that does not parse or does not check changes nothing: :meth:`Reloader.reload` raises
the :class:`~supervisor.exceptions.ConfigError` that says why before it touches any agent, and
the server goes on with what it had. So does a file that names an agent the API created and
that is active (stop it, or rename the table); an API agent of that name that has ended is
taken over by the file. Settings other than agents and profiles are read at start only: the
result lists those that differ (``restart_needed``).

A config agent is defined like an API one (:meth:`~supervisor.registry.Registry.define`): when
its record cannot be written (a full disk, an I/O error) it is refused in the same way, nothing
of it is half made, and the reload goes on with the other agents. The refusals are in the
result (``failed``: name -> ``{"code", "message"}``, ``storage_full`` or ``storage_failed``),
in the log, and make ``POST /api/reload`` answer 507 or 503; a server that starts on a full
disk starts anyway, with the agents it could keep. Failures of what is already kept (its
history, output.log, record) are the storage health's, as for every agent.

:func:`apply` is also the start of a server (``boot``): then every config agent whose
``autostart`` is true starts, changed or not, as supervisord starts its programs.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent
import gevent.lock

from . import config_agents
from .config import Config
from .config_agents import ConfigAgent
from .exceptions import ConfigError, StorageFailed, StorageFull

if TYPE_CHECKING:
    from .agent import Agent
    from .registry import Registry

log = logging.getLogger(__name__)

#: How long a reload waits for the agents it stops, beyond their grace periods.
STOP_MARGIN_S = 10.0
#: Settings a reload applies (the rest need a restart of the server).
RELOADED = frozenset({"agents", "profiles", "default_extractors", "config_file"})


@dataclass
class ReloadResult:
    """What a reload (or a server's start) did, by agent name."""

    config_file: str | None = None
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: Settings that differ in the file but are only read when the server starts.
    restart_needed: list[str] = field(default_factory=list)
    #: Agents that could not be (re)defined because their record cannot be written:
    #: name -> ``{"code": "storage_full" or "storage_failed", "message": ...}``.
    failed: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def apply(registry: Registry, desired: dict[str, ConfigAgent], *, boot: bool = False) -> ReloadResult:
    """Make the registry's config agents what ``desired`` says (see the module docstring).
    Raises :class:`ConfigError` before changing anything when a name is an active API agent's."""
    agents = {agent.name: agent for agent in registry.list()}
    clashes = [name for name in desired if name in agents and agents[name].origin == "api" and agents[name].active]
    if clashes:
        names = ", ".join(repr(name) for name in clashes)
        raise ConfigError(f"the config file defines {names}, but an agent of that name was created over the API"
                          " and is running: stop it (or rename the [agents.NAME] table) and reload again")
    result = ReloadResult()
    changed: list[str] = []
    for name, want in desired.items():
        agent = agents.get(name)
        if agent is None or agent.origin == "api":
            result.added.append(name)
        elif not want.same_as(agent.spec, agent.autostart):
            changed.append(name)
        else:
            result.unchanged.append(name)
    removed = sorted(name for name, agent in agents.items() if agent.origin == "config" and name not in desired)
    # Stop, all at once, what is to go or to change; then redefine and start.
    _stop_all(registry, [agents[name] for name in removed + changed if agents[name].active])
    for name in removed:
        if agents[name].active:
            log.warning("agent %s did not stop; it stays until the next reload", name)
            continue
        registry.remove(name, from_config=True)
        result.removed.append(name)
    for name in list(result.added):
        if name in agents:
            log.info("the config file takes over agent %s (it was created over the API)", name)
        if not _define(registry, desired[name], "started from the config file" if boot else "added to the config file",
                       result):
            result.added.remove(name)
    for name in changed:
        if agents[name].active:
            log.warning("agent %s did not stop; its new definition waits for the next reload", name)
            continue
        if _define(registry, desired[name], "started from the config file" if boot else "changed in the config file",
                   result):
            result.changed.append(name)
    if boot:
        for name in result.unchanged:
            agent = agents[name]
            if desired[name].autostart and not agent.active:
                agent.restarts = 0
                agent.start("started from the config file")
    return result


def _define(registry: Registry, want: ConfigAgent, reason: str, result: ReloadResult) -> bool:
    """Define (and start, if ``autostart``) one config agent; False, with the refusal in
    ``result.failed`` and the log, when its record cannot be written."""
    try:
        registry.define(want.spec, want.extractors, origin="config", autostart=want.autostart,
                        start=want.autostart, reason=reason)
    except (StorageFull, StorageFailed) as exc:
        log.error("agent %s of the config file was not %s: %s", want.spec.name,
                  "started" if want.autostart else "defined", exc)
        result.failed[want.spec.name] = {"code": exc.code, "message": str(exc)}
        return False
    return True


def _stop_all(registry: Registry, agents: list[Agent]) -> None:
    """Stop ``agents`` in parallel and wait until each has ended (or its grace is long past)."""
    if not agents:
        return
    gevent.joinall([gevent.spawn(agent.stop) for agent in agents])
    for agent in agents:
        agent.wait(agent.grace_s() + STOP_MARGIN_S)


def differing_settings(current: Config, new: Config) -> list[str]:
    """Settings that ``new`` changes and that only a restart of the server would apply."""
    before, after = current.public_dict(), new.public_dict()
    skip = RELOADED | {"token_set"}  # a generated token is not in the file
    return sorted(key for key in after if key not in skip and before.get(key) != after[key])


class Reloader:
    """Reloads one server's config file (``load`` reads it again, with the server's flags);
    one reload at a time."""

    def __init__(self, registry: Registry, load: Callable[[], Config]) -> None:
        self.registry = registry
        self.load = load
        self._lock = gevent.lock.Semaphore()

    def reload(self) -> ReloadResult:
        """Read the file, check it whole, apply it; raises :class:`ConfigError` (nothing changed)."""
        with self._lock:
            new = self.load()
            desired = config_agents.build(new)
            current = self.registry.config
            restart_needed = differing_settings(current, new)
            # Later API agents use the profiles of the new file too.
            self.registry.config = dataclasses.replace(
                current, agents=new.agents, profiles=new.profiles, default_extractors=new.default_extractors,
                config_file=new.config_file)
            try:
                result = apply(self.registry, desired)
            except ConfigError:
                self.registry.config = current
                raise
            result.config_file = None if new.config_file is None else str(new.config_file)
            result.restart_needed = restart_needed
            log.info("reloaded %s: added %s, changed %s, removed %s, refused %s", result.config_file or "the configuration",
                     result.added or "none", result.changed or "none", result.removed or "none",
                     sorted(result.failed) or "none")
            return result
