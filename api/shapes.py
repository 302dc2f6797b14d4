"""The agent JSON of the REST API (``GET /api/agents/<name>``), rendered from an agent's record.

One function, so that every route, and the ``agent_added`` event of the all-agents stream, show
an agent the same way; docs/API.md lists its fields in this order.
"""
from __future__ import annotations

import time
from typing import Any

from supervisor.events import rfc3339
from supervisor.store import AgentRecord


def agent_json(record: AgentRecord, last_event_id: int, clients: int | None = None) -> dict[str, Any]:
    """``record`` as the API shows it; ``clients`` (stream clients of the agent) is added when
    known. Times are RFC 3339; ``duration_s`` runs on while the agent does."""
    spec = record.spec
    data: dict[str, Any] = {
        "name": spec.name,
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
        "cols": record.cols,
        "rows": record.rows,
        "extractors": spec.extractors,
        "last_event_id": last_event_id,
    }
    if clients is not None:
        data["clients"] = clients
    return data
