"""In-process agents: run one to its end, and read what it left in history."""
from __future__ import annotations

from typing import Any

from supervisor.agent import Agent
from supervisor.events import Event
from supervisor.registry import Registry


def history(registry: Registry, name: str, type: str | None = None) -> list[Event]:
    """Every retained event of ``name`` (of one ``type``, if given), oldest first (what is
    committed now included)."""
    registry.eventlog.flush()
    return [e for e in registry.eventlog.read_after(0, name).events if type is None or e.type == type]


def lines(registry: Registry, name: str) -> list[str]:
    """The complete (not partial) lines ``name`` printed, as printed."""
    return [e.data["line"] for e in history(registry, name, "log") if not e.data.get("partial")]


def run_to_end(registry: Registry, timeout: float = 20.0, **body: Any) -> Agent:
    """Create an agent from ``body`` and wait (letting the hub run) until it is no longer active."""
    agent = registry.create(body)
    assert agent.wait(timeout), f"agent {agent.name} did not finish"
    return agent
