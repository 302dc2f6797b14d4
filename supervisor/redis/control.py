"""Commands for agents of another node: one control stream per node, a reply with a deadline.

A node that receives ``stop``, ``restart``, ``input``, ``resize``, ``delete`` (or a ``create``
with another ``"node"``) for an agent it does not own adds a request to the owner's stream
``{as}:control:<owner>`` (``XADD ... MAXLEN ~``): an id, the operation, the agent, its
arguments, a deadline, and the list key to answer on. It then waits for the answer with
``BLPOP`` until the deadline; none in time is :class:`~supervisor.exceptions.NodeUnavailable`
(504). The owner reads its stream with ``XREAD BLOCK`` (one greenlet), runs each request in a
greenlet of its own with the handler the registry gives it, and pushes ``[status, body]`` to the
list (which expires). A request found after its deadline (a node that was paused, or restarted
and reading from before) is not run: its caller has been told 504 already.

Centrifugo's Redis engine has the same shape (a control channel per node); streams instead of
PUB/SUB so that a request sent while the owner is reconnecting is still there when it reads.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import gevent

import redis

from ..exceptions import NodeUnavailable, RemoteError, SupervisorError
from . import entries
from .keys import Keys
from .writer import RETRY_MAX_S, UNREACHABLE

log = logging.getLogger(__name__)

#: Requests kept in a node's control stream (``MAXLEN ~``): old ones are past their deadline.
CONTROL_MAXLEN = 1000
#: Seconds an unread reply stays in Redis.
REPLY_TTL_S = 60
#: How long one XREAD of the control stream waits (ms).
BLOCK_MS = 2000

#: ``handler(op, name, args) -> (status, body)``: run one request on the owner.
Handler = Callable[[str, str, dict[str, Any]], tuple[int, Any]]


class Control:
    """The control path of ``node``: sends requests to other nodes, serves its own."""

    def __init__(self, url: str, keys: Keys, node: str, handler: Handler, timeout_s: float) -> None:
        from .connection import connect

        self.keys = keys
        self.node = node
        self.handler = handler
        self.timeout_s = timeout_s
        # Waiting for replies holds a connection each (BLPOP): a pool of their own, whose socket
        # timeout is above the longest wait.
        self.client = connect(url, name=f"agent-supervisor:{node}:control", socket_timeout=timeout_s + 5,
                              max_connections=64)
        self._reader = connect(url, name=f"agent-supervisor:{node}:control-read",
                               socket_timeout=BLOCK_MS / 1000 + 5, max_connections=1)
        self._greenlet: gevent.Greenlet[..., Any] = gevent.spawn(self._serve)

    def close(self) -> None:
        self._greenlet.kill(block=False)
        self.client.close()
        self._reader.close()

    # -- asking another node ---------------------------------------------------------------

    def request(self, node: str, op: str, name: str, args: dict[str, Any]) -> tuple[int, Any]:
        """Run ``op`` on ``name`` at ``node``; its (status, body). Raises
        :class:`NodeUnavailable` when it does not answer in time, :class:`RemoteError` with the
        owner's error."""
        rid = secrets.token_hex(8)
        deadline = time.time() + self.timeout_s
        fields = {"id": rid, "op": op, "name": name, "args": json.dumps(args), "from": self.node,
                  "deadline": f"{deadline:.3f}", "reply": self.keys.reply(rid)}
        try:
            self.client.xadd(self.keys.control(node), fields, maxlen=CONTROL_MAXLEN, approximate=True)  # type: ignore[arg-type]
            reply = self.client.blpop([self.keys.reply(rid)], timeout=max(0.01, deadline - time.time()))
        except UNREACHABLE as exc:
            raise NodeUnavailable(f"node {node!r} cannot be reached: Redis is unavailable ({exc})") from exc
        if not reply:
            raise NodeUnavailable(f"node {node!r}, which runs agent {name!r}, did not answer within"
                                  f" {self.timeout_s:g} s")
        status, body = json.loads(reply[1])
        if status >= 400 and isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            raise RemoteError(str(error.get("code", "error")), int(status), str(error.get("message", "")))
        return int(status), body

    # -- serving this node's stream --------------------------------------------------------

    def _serve(self) -> None:
        stream = self.keys.control(self.node)
        position = "$"
        while True:
            try:
                reply = self._reader.xread({stream: position}, count=100, block=BLOCK_MS)
            except UNREACHABLE:
                gevent.sleep(RETRY_MAX_S)
                continue
            except Exception:
                log.exception("reading the control stream of %s failed", self.node)
                gevent.sleep(RETRY_MAX_S)
                continue
            for entry_id, fields in entries.read_reply(reply):
                position = entry_id.decode()
                gevent.spawn(self._run, {key.decode(): value.decode() for key, value in fields.items()})

    def _run(self, request: dict[str, str]) -> None:
        try:
            if time.time() > float(request["deadline"]):
                log.info("control request %s (%s %s) came too late; not run", request.get("id"),
                         request.get("op"), request.get("name"))
                return
            op, name, args = request["op"], request["name"], json.loads(request["args"])
        except (KeyError, ValueError) as exc:
            log.warning("skipping a malformed control request: %s", exc)
            return
        try:
            status, body = self.handler(op, name, args if isinstance(args, dict) else {})
        except SupervisorError as exc:
            status, body = exc.status, {"error": {"code": exc.code, "message": str(exc)}}
        except Exception as exc:
            log.exception("control request %s %s failed", op, name)
            status, body = 500, {"error": {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}}
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(request["reply"], json.dumps([status, body]))
            pipe.expire(request["reply"], REPLY_TTL_S)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("the reply to control request %s could not be sent: %s", request.get("id"), exc)
