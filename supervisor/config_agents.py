"""Agents declared in the config file: ``[agents.NAME]`` tables, checked into agent definitions.

A table takes the fields of ``POST /api/agents`` (the name is the table's) plus ``autostart``
(default true: ``serve`` and ``reload`` start it), the way supervisord's ``[program:x]`` does::

    [agents.build]
    command = ["npm", "run", "build"]
    cwd = "/home/me/project"
    restart = "on-failure"
    extractors = [{ name = "percent", pattern = '(?P<value>\\d+)%' }]
    autostart = false

:func:`build` checks every table at once and returns the definitions, or raises one
:class:`~supervisor.exceptions.ConfigError` that names the file, the agent and the key at fault
(``config file '/x/config.toml': [agents.build] extractors: extractor 'percent': bad pattern
...``), so a server never starts, and a reload never changes anything, on half a configuration.
What a reload then does with the definitions is :mod:`supervisor.reload`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import AgentTable, Config
from .exceptions import (
    ConfigError,
    ExecutableNotFound,
    InvalidCommand,
    InvalidCwd,
    InvalidExtractor,
    InvalidRequest,
    SpawnError,
    UnknownProfile,
)
from .extractors import ExtractorSet
from .spec import AGENT_FIELDS, AgentSpec, build_spec

#: The keys of an ``[agents.NAME]`` table: the API's fields (the name is the table's) and autostart.
TABLE_KEYS = frozenset(AGENT_FIELDS - {"name"} | {"autostart"})

# Which key a definition error is about, for the errors that do not start with it.
_KEY_OF_ERROR: tuple[tuple[type[InvalidRequest], str], ...] = (
    (InvalidExtractor, "extractors"),
    (UnknownProfile, "profile"),
    (InvalidCwd, "cwd"),
    (ExecutableNotFound, "command"),
    (InvalidCommand, "command"),
    (SpawnError, "command"),
)


@dataclass(frozen=True)
class ConfigAgent:
    """One agent of the config file, checked: its definition and whether to start it."""

    spec: AgentSpec
    extractors: ExtractorSet
    autostart: bool

    def same_as(self, spec: AgentSpec, autostart: bool) -> bool:
        """Whether an agent defined by ``spec`` with ``autostart`` is this one unchanged."""
        return self.spec == spec and self.autostart == autostart


def build(config: Config) -> dict[str, ConfigAgent]:
    """Every ``[agents.NAME]`` of ``config`` as a definition; raises :class:`ConfigError`."""
    return {name: _one(table, config) for name, table in sorted(config.agents.items())}


def _where(table: AgentTable) -> str:
    """``config file '/x/config.toml': [agents.build]`` (or the variable it came from)."""
    source = table.source.removeprefix("in ")
    origin = f"config file {source!r}" if table.source.startswith("in ") else source
    return f"{origin}: [agents.{table.name}]"


def _one(table: AgentTable, config: Config) -> ConfigAgent:
    raw = dict(table.table)
    unknown = sorted(str(key) for key in raw if key not in TABLE_KEYS)
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        raise ConfigError(f"{_where(table)}: unknown key{'s' if len(unknown) > 1 else ''} {names}"
                          f" (known: {', '.join(sorted(TABLE_KEYS))})")
    autostart = raw.pop("autostart", True)
    if not isinstance(autostart, bool):
        raise ConfigError(f"{_where(table)} autostart: must be true or false, got {autostart!r}")
    try:
        spec, extractors = build_spec({"name": table.name, **raw}, config)
    except InvalidRequest as exc:
        raise ConfigError(f"{_where(table)} {_key_of(exc, raw)}: {exc}") from None
    return ConfigAgent(spec, extractors, autostart)


def _key_of(exc: InvalidRequest, raw: dict[str, Any]) -> str:
    """The key a definition error is about: by its kind, else the key its message starts with
    (``cols must be an integer ...``, ``restart.backoff_s must ...``)."""
    for kind, key in _KEY_OF_ERROR:
        if isinstance(exc, kind):
            return key
    head = str(exc).split(" ", 1)[0].split(".", 1)[0]
    if head in TABLE_KEYS:
        return head
    return "command" if "command" in str(exc) else "definition"
