"""The agent JSON of the REST API (``GET /api/agents/<name>``), rendered from an agent's record.

One function, so that every route, and the ``agent_added`` event of the all-agents stream, show
an agent the same way; docs/API.md lists its fields in this order.
"""
from __future__ import annotations

import time
from typing import Any

from supervisor.containment.usage import Figures
from supervisor.events import rfc3339
from supervisor.store import AgentRecord, Processes


def agent_json(record: AgentRecord, last_event_id: int, clients: int | None = None,
               node: str | None = None) -> dict[str, Any]:
    """``record`` as the API shows it; ``clients`` (stream clients of the agent) is added when
    known, ``node`` (the server that runs it) in a cluster. Times are RFC 3339; ``duration_s``
    runs on while the agent does."""
    spec = record.spec
    data: dict[str, Any] = {
        "name": spec.name,
        **({"node": node} if node is not None else {}),
        "command": spec.command,
        "profile": spec.profile,
        "cwd": spec.cwd,
        "state": record.state,
        "reason": record.reason,
        "run": record.run,
        "pid": record.pid,
        "started_at": rfc3339(record.started_at) if record.started_at else None,
        "ended_at": rfc3339(record.ended_at) if record.ended_at else None,
        "exit_code": record.exit_code,
        "signal": record.signal,
        "duration_s": record.duration_s(time.time()),
        "lines": record.lines,
        "extractions": record.extractions,
        "extractions_cut": record.extractions_cut,
        "restarts": record.restarts,
        "restart": spec.restart.mode,
        "origin": record.origin,
        "autostart": record.autostart,
        "waiting_input": record.waiting_input,
        "prompt": record.prompt,
        "cols": record.cols,
        "rows": record.rows,
        "screen": spec.screen,
        "extractors": spec.extractors,
        **processes_json(record.processes),
        "last_event_id": last_event_id,
    }
    if clients is not None:
        data["clients"] = clients
    return data


def processes_json(processes: Processes | None) -> dict[str, Any]:
    """The agent's processes: the containment in force for them, what they cost now, and how
    many of the last run's the server ended or kept."""
    if processes is None:
        return {"containment": None, "usage": None, "ended": 0, "kept": 0}
    containment: dict[str, Any] = {"mode": processes.mode, "leftovers": processes.leftovers}
    if processes.cgroup is not None:
        containment["cgroup"] = processes.cgroup
    return {
        "containment": containment,
        "usage": usage_json(processes.usage),
        "ended": processes.ended,
        "kept": processes.kept,
    }


def usage_json(figures: Figures | None) -> dict[str, Any] | None:
    """What a process tree costs (``usage`` of the agent JSON and of ``/api/sse/stats``); None
    when none of its processes runs."""
    if figures is None:
        return None
    return {
        "cpu_percent": figures.cpu_percent,
        "rss_bytes": figures.rss_bytes,
        "processes": figures.processes,
        "uptime_s": figures.uptime_s,
    }
