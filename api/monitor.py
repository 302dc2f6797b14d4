"""Monitoring: stream statistics and a health probe.

``/healthz`` answers 200 also when the storage is degraded (``"status": "degraded"`` and the
reasons): the server still runs its agents and streams them live, and a liveness probe that
restarted it on a full disk would lose the live state without freeing a byte. Monitoring
alerts on ``status`` instead.
"""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint

from .ext import current
from .shapes import usage_json

bp = Blueprint("monitor", __name__)


@bp.get("/api/sse/stats")
def stats() -> dict[str, Any]:
    ext = current()
    agents = ext.registry.list()
    stats = ext.streams.stats(agent.name for agent in agents)
    # Cuts of the per-line extraction caps since the server started, every run and deleted
    # agents included (each agent's "extractions_cut" is its current run's).
    stats["extractions_cut"] = ext.registry.extractions_cut()
    # What each agent's processes cost (CPU, memory, processes, uptime), from the sampler, and
    # what the sampler costs.
    stats["usage"] = {agent.name: usage_json(figures) for agent in agents
                      if (figures := agent.custody.usage()) is not None}
    stats["containment"] = ext.registry.containment_stats()
    # The screen streams (/api/agents/<name>/screen/stream): their clients, and how many fresh
    # snapshots went to clients that had fallen behind (instead of dropping them).
    stats["screen_clients"] = ext.screens.describe()
    stats["screen_snapshots_for_slow"] = ext.screens.snapshots_for_slow
    stats["storage"] = ext.registry.eventlog.storage_status()
    return stats


@bp.get("/healthz")
def healthz() -> dict[str, Any]:
    ext = current()
    storage = ext.registry.storage
    health: dict[str, Any] = {
        "status": "degraded" if storage.degraded else "ok",
        "agents": len(ext.registry.list()),
        "clients": ext.streams.client_count,
        "uptime_s": round(time.time() - ext.streams.started_at, 3),
    }
    if storage.degraded:
        health["reasons"] = storage.reasons()
    return health
