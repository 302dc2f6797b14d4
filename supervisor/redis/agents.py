"""The cluster's registry of agents in Redis: every agent, the node that owns it, its JSON.

One hash, ``{as}:agents``: agent name -> ``"<node>\\t<state>\\t<reason>\\t<agent JSON>"``. The
owner writes its agents' JSON on every change of state; the state (and, once another node
declared the agent lost, the reason) sits in front of the JSON so that the scripts can read and
change it without decoding JSON (Redis's ``cjson`` would turn an empty list into an object).
Names are claimed atomically (``lua/claim.lua``): unique across the cluster. When a node's
lease expires, ``lua/reap.lua`` moves its active agents to ``lost`` in one step, for the one
caller that did it: that caller, and only it, appends their ``state`` and ``complete`` events.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis

from ..exceptions import NameTaken
from .keys import Keys
from .scripts import CLAIM, REAP, RELEASE


@dataclass(frozen=True, slots=True)
class Entry:
    """One agent of the cluster: its owner and its agent JSON (state and reason as the
    registry has them)."""

    node: str
    agent: dict[str, Any]

    @property
    def state(self) -> str | None:
        state = self.agent.get("state")
        return state if isinstance(state, str) else None


def encode(node: str, agent: dict[str, Any]) -> str:
    return f"{node}\t{agent.get('state') or ''}\t\t{json.dumps(agent, separators=(',', ':'))}"


def decode(value: bytes | str) -> Entry:
    text = value.decode() if isinstance(value, bytes) else value
    node, state, reason, body = text.split("\t", 3)
    agent = json.loads(body)
    agent["node"] = node
    agent.setdefault("state", None)  # a name claimed, its agent not written yet
    if state and agent.get("state") != state:
        agent["state"] = state
        if reason:
            agent["reason"] = reason
    return Entry(node, agent)


class ClusterAgents:
    """The ``{as}:agents`` hash, for one node."""

    def __init__(self, client: redis.Redis, keys: Keys, node: str) -> None:
        self.client = client
        self.keys = keys
        self.node = node

    def all(self) -> dict[str, Entry]:
        stored = cast(dict[bytes, bytes], self.client.hgetall(self.keys.agents))
        found = {}
        for name, value in stored.items():
            try:
                found[name.decode()] = decode(value)
            except (ValueError, UnicodeDecodeError):
                continue  # not one of ours
        return found

    def claim(self, name: str, agent: dict[str, Any]) -> None:
        """Take ``name`` for this node (with its JSON); :class:`NameTaken` if another has it."""
        owner = CLAIM(self.client, [self.keys.agents], [name, self.node, encode(self.node, agent)])
        owner = owner.decode() if isinstance(owner, bytes) else str(owner)
        if owner != self.node:
            raise NameTaken(f"agent {name!r} exists on node {owner!r}: names are unique in a cluster")

    def put(self, agents: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Write this node's agents' JSON (one round trip)."""
        mapping = {name: encode(self.node, agent) for name, agent in agents}
        if mapping:
            self.client.hset(self.keys.agents, mapping=mapping)  # type: ignore[arg-type]  # str values are fine

    def release(self, name: str) -> None:
        RELEASE(self.client, [self.keys.agents], [name, self.node])

    def reap(self, node: str, reason: str, active: Iterable[str]) -> dict[str, Entry]:
        """Move the active agents of ``node`` (whose lease is gone) to lost; those this call
        moved (none when another node did it first, or the lease is back)."""
        moved = REAP(self.client, [self.keys.agents, self.keys.lease(node)], [node, reason, *active])
        pairs = list(moved or [])
        return {pairs[i].decode(): decode(pairs[i + 1]) for i in range(0, len(pairs), 2)}

    def leases(self, nodes: Iterable[str]) -> dict[str, bool]:
        """Whether each node holds a lease now."""
        names = list(nodes)
        if not names:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for node in names:
            pipe.exists(self.keys.lease(node))
        return {node: bool(alive) for node, alive in zip(names, pipe.execute())}
