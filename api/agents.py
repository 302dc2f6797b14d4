"""REST for agents: define, list, inspect, stop, restart, type into, resize, delete, read history."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from supervisor.exceptions import InvalidRequest

from .errors import ApiError
from .ext import current, read_json
from .shapes import agent_json

bp = Blueprint("agents", __name__, url_prefix="/api/agents")

MAX_EVENTS_PAGE = 10_000


def _summary(name: str) -> dict[str, Any]:
    ext = current()
    record = ext.registry.get(name).record()
    return agent_json(record, ext.registry.eventlog.last_id(name), ext.streams.clients_of(name))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


@bp.post("")
def create() -> tuple[dict[str, Any], int]:
    agent = current().registry.create(read_json())
    return _summary(agent.name), 201


@bp.get("")
def index() -> dict[str, Any]:
    return {"agents": [_summary(agent.name) for agent in current().registry.list()]}


@bp.get("/<name>")
def show(name: str) -> dict[str, Any]:
    return _summary(name)


@bp.post("/<name>/stop")
def stop(name: str) -> tuple[dict[str, Any], int]:
    body = _object(read_json(required=False))
    grace = body.get("grace_s")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace <= 3600):
        raise InvalidRequest("grace_s must be a number of seconds from 0 to 3600")
    current().registry.stop(name, grace)
    return _summary(name), 202


@bp.post("/<name>/restart")
def restart(name: str) -> tuple[dict[str, Any], int]:
    current().registry.restart(name)
    return _summary(name), 202


@bp.post("/<name>/input")
def send_input(name: str) -> tuple[str, int]:
    agent = current().registry.get(name)
    body = _object(read_json())
    data = body.get("data")
    if not isinstance(data, str):
        raise InvalidRequest('input needs {"data": "<text>"}; send "\\n" to press Enter')
    agent.write(data)
    return "", 204


@bp.post("/<name>/resize")
def resize(name: str) -> tuple[str, int]:
    agent = current().registry.get(name)
    body = _object(read_json())
    size = []
    for key, low, high in (("cols", 10, 1000), ("rows", 5, 500)):
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidRequest(f"{key} must be an integer from {low} to {high}")
        size.append(value)
    agent.resize(*size)
    return "", 204


@bp.delete("/<name>")
def delete(name: str) -> tuple[str, int]:
    current().registry.remove(name)
    return "", 204


def _int_arg(key: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(key)
    if raw is None or raw == "":
        return default
    # ASCII digits only: str.isdigit() also takes "²" (which int() refuses) and "１２".
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_request", f"{key} must be an integer from {low} to {high}")
    return int(raw)


@bp.get("/<name>/events")
def history(name: str) -> Response:
    ext = current()
    ext.registry.get(name)
    after = _int_arg("after", 0, 0, 2**63 - 1)
    limit = _int_arg("limit", 1000, 1, MAX_EVENTS_PAGE)
    replay = ext.registry.eventlog.read_after(after, name, limit)
    # Each event's JSON was made once when it was published; reuse it, do not re-encode.
    body = (
        '{"events":[' + ",".join(e.json for e in replay.events) + "],"
        f'"last_event_id":{ext.registry.eventlog.last_id(name)},'
        f'"reset":{"true" if replay.reset else "false"},"missed":{replay.missed}}}'
    )
    return Response(body, mimetype="application/json")
