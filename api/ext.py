"""How views reach the supervisor: through ``current_app.extensions``, never a module global."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import current_app, request

from supervisor.config import Config
from supervisor.registry import Registry

from .errors import ApiError
from .sse_manager import SSEManager

EXTENSION = "agent_supervisor"


@dataclass
class Supervisor:
    """What ``create_app`` builds and keeps in ``app.extensions["agent_supervisor"]``."""

    config: Config
    registry: Registry
    streams: SSEManager


def current() -> Supervisor:
    ext: Supervisor = current_app.extensions[EXTENSION]
    return ext


def read_json(required: bool = True) -> Any:
    """The request body as JSON; 400 ``invalid_json`` if it is not, 413 if it is too large."""
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "a JSON body is required")
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
