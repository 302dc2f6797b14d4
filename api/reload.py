"""``POST /api/reload``: read the config file again and apply its agents (see supervisor.reload)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from supervisor.exceptions import ConfigError, StorageFailed, StorageFull

from .errors import ApiError
from .ext import current

bp = Blueprint("reload", __name__, url_prefix="/api")


@bp.post("/reload")
def reload() -> dict[str, Any]:
    """200 with what changed; 400 ``invalid_config`` (and nothing changed) for a file that does
    not parse or check, with the reason; 507 ``storage_full`` (503 ``storage_failed``) when
    agents of the file could not be kept, as ``POST /api/agents`` answers: the rest of the
    file was applied, and the message names those refused and why."""
    try:
        result = current().reloader.reload()
    except ConfigError as exc:
        raise ApiError(400, "invalid_config", f"{exc}; nothing was changed") from None
    if result.failed:
        full = any(failure["code"] == StorageFull.code for failure in result.failed.values())
        refused = "; ".join(failure["message"] for failure in result.failed.values())
        raise ApiError(StorageFull.status if full else StorageFailed.status,
                       StorageFull.code if full else StorageFailed.code,
                       f"reloaded, but {len(result.failed)} agent(s) of the config file could not be kept: {refused}")
    return result.to_dict()
