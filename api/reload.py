"""``POST /api/reload``: read the config file again and apply its agents (see supervisor.reload)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from supervisor.exceptions import ConfigError

from .errors import ApiError
from .ext import current

bp = Blueprint("reload", __name__, url_prefix="/api")


@bp.post("/reload")
def reload() -> dict[str, Any]:
    """200 with what changed; 400 ``invalid_config`` (and nothing changed) for a file that does
    not parse or check, with the reason."""
    try:
        result = current().reloader.reload()
    except ConfigError as exc:
        raise ApiError(400, "invalid_config", f"{exc}; nothing was changed") from None
    return result.to_dict()
