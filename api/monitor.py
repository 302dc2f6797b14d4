"""Monitoring: stream statistics and a health probe."""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint

from .ext import current

bp = Blueprint("monitor", __name__)


@bp.get("/api/sse/stats")
def stats() -> dict[str, Any]:
    ext = current()
    agents = ext.registry.list()
    stats = ext.streams.stats(agent.name for agent in agents)
    # Extractions the per-line caps cut, over every agent's current run (each agent's own
    # count is its "extractions_cut").
    stats["extractions_cut"] = sum(agent.extractions_cut for agent in agents)
    return stats


@bp.get("/healthz")
def healthz() -> dict[str, Any]:
    ext = current()
    return {
        "status": "ok",
        "agents": len(ext.registry.list()),
        "clients": ext.streams.client_count,
        "uptime_s": round(time.time() - ext.streams.started_at, 3),
    }
