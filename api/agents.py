"""REST for agents: define, list, inspect, stop, restart, type into, resize, delete, read history."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from supervisor.config import is_node_name
from supervisor.exceptions import InvalidRequest

from .errors import ApiError
from .ext import current, read_json
from .shapes import agent_json

bp = Blueprint("agents", __name__, url_prefix="/api/agents")

MAX_EVENTS_PAGE = 10_000


def _summary(name: str) -> dict[str, Any]:
    ext = current()
    cluster = ext.registry.cluster
    if cluster is not None and name not in ext.registry and cluster.owner(name) is not None:
        return cluster.remote(name)
    record = ext.registry.get(name).record()
    return agent_json(record, ext.registry.eventlog.last_id(name), ext.streams.clients_of(name),
                      node=ext.config.node if cluster is not None else None)


def _owner(name: str) -> str | None:
    """The node that runs ``name`` when it is another node of the cluster (else None: here)."""
    ext = current()
    cluster = ext.registry.cluster
    if cluster is None or name in ext.registry:
        return None
    return cluster.owner(name)


def _forward(node: str, op: str, name: str, args: dict[str, Any]) -> tuple[Any, int]:
    """Run the request on the node that owns the agent (504 node_unavailable if it does not
    answer in time); its answer as it gave it."""
    cluster = current().registry.cluster
    assert cluster is not None
    status, body = cluster.request(node, op, name, args)
    return ("" if body is None else body), status


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


@bp.post("")
def create() -> tuple[Any, int]:
    ext = current()
    body = read_json()
    if ext.registry.cluster is None or not isinstance(body, dict):  # alone, "node" is an unknown field
        return _summary(ext.registry.create(body).name), 201
    node = body.get("node")
    if node is not None and node != ext.config.node:
        if not isinstance(node, str) or not is_node_name(node):
            raise InvalidRequest('"node" must be the name of a node of the cluster (1-64 letters, digits and ._-)')
        return _forward(node, "create", str(body.get("name", "")), {k: v for k, v in body.items() if k != "node"})
    agent = ext.registry.create({k: v for k, v in body.items() if k != "node"})
    return _summary(agent.name), 201


@bp.get("")
def index() -> dict[str, Any]:
    ext = current()
    names = [agent.name for agent in ext.registry.list()]
    if ext.registry.cluster is not None:
        names = sorted({*names, *ext.registry.cluster.remote_names()})
    return {"agents": [_summary(name) for name in names]}


@bp.get("/<name>")
def show(name: str) -> dict[str, Any]:
    return _summary(name)


@bp.post("/<name>/stop")
def stop(name: str) -> tuple[Any, int]:
    body = _object(read_json(required=False))
    grace = body.get("grace_s")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace <= 3600):
        raise InvalidRequest("grace_s must be a number of seconds from 0 to 3600")
    node = _owner(name)
    if node is not None:
        return _forward(node, "stop", name, {"grace_s": grace})
    current().registry.stop(name, grace)
    return _summary(name), 202


@bp.post("/<name>/restart")
def restart(name: str) -> tuple[Any, int]:
    node = _owner(name)
    if node is not None:
        return _forward(node, "restart", name, {})
    current().registry.restart(name)
    return _summary(name), 202


@bp.post("/<name>/input")
def send_input(name: str) -> tuple[Any, int]:
    node = _owner(name)
    agent = current().registry.get(name) if node is None else None
    body = _object(read_json())
    data = body.get("data")
    if not isinstance(data, str):
        raise InvalidRequest('input needs {"data": "<text>"}; send "\\n" to press Enter')
    if agent is None:
        assert node is not None
        return _forward(node, "input", name, {"data": data})
    agent.write(data)
    return "", 204


@bp.post("/<name>/resize")
def resize(name: str) -> tuple[Any, int]:
    node = _owner(name)
    agent = current().registry.get(name) if node is None else None
    body = _object(read_json())
    size = []
    for key, low, high in (("cols", 10, 1000), ("rows", 5, 500)):
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidRequest(f"{key} must be an integer from {low} to {high}")
        size.append(value)
    if agent is None:
        assert node is not None
        return _forward(node, "resize", name, {"cols": size[0], "rows": size[1]})
    agent.resize(*size)
    return "", 204


@bp.delete("/<name>")
def delete(name: str) -> tuple[Any, int]:
    node = _owner(name)
    if node is not None:
        return _forward(node, "delete", name, {})
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
    if _owner(name) is None:
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
