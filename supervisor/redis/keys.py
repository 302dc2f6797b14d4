"""Every Redis key of one cluster, under one hash tag.

All keys start with ``{<prefix>}:``: Redis Cluster places a key by the part between the first
braces only, so one tag puts every key in one slot, and a script that touches the sequence and
the streams together runs there. (The price: one cluster shard serves a whole supervisor
cluster. Ids come from one counter anyway, so there is nothing to spread.) Two clusters can
share a Redis with different prefixes.
"""
from __future__ import annotations

from ..names import is_name


def check_node_name(node: str) -> str:
    """``node`` if it is a valid node name (1-64 letters, digits and ``._-``, as a host name
    is: :func:`supervisor.names.is_name`), else ``ValueError``: it is part of keys and of the
    script's bookkeeping."""
    if not is_name(node):
        raise ValueError(f"a node name is 1-64 letters, digits and ._- (got {node!r})")
    return node


class Keys:
    """Key names; ``prefix`` (default ``as``) of letters, digits and ``._-``."""

    __slots__ = ("prefix", "tag", "epoch", "meta", "stream", "batches", "holes", "agents")

    def __init__(self, prefix: str = "as") -> None:
        if not is_name(prefix):
            raise ValueError(f"a Redis key prefix is 1-64 letters, digits and ._- (got {prefix!r})")
        self.prefix = prefix
        self.tag = "{" + prefix + "}"
        #: A random id, set once (SET NX or a rebase); a new value means a new or wiped Redis.
        self.epoch = f"{self.tag}:epoch"
        #: Hash: ``seq`` (the last id issued) and ``base`` (ids of this epoch are above it).
        self.meta = f"{self.tag}:meta"
        #: The all-agents stream: every event, entry id ``<id>-0``, fields ``channel``, ``event``.
        self.stream = f"{self.tag}:stream"
        #: Hash: node -> "token batch first count" of its last batch (a retried batch is not doubled).
        self.batches = f"{self.tag}:batches"
        #: Hash: "<token> <channel>" -> "<id> <count>": events a node dropped after that id.
        self.holes = f"{self.tag}:holes"
        #: Hash: agent name -> JSON ``{"node": owner, "agent": its agent JSON}`` (the registry).
        self.agents = f"{self.tag}:agents"

    def channel_stream(self, channel: str) -> str:
        """One channel's stream (an agent's, or the supervisor's own): entry ``<id>-0``, field ``event``."""
        return f"{self.tag}:stream:{channel}"

    def lease(self, node: str) -> str:
        """A node's lease: its token, with a TTL; no key, no lease."""
        return f"{self.tag}:lease:{check_node_name(node)}"

    def control(self, node: str) -> str:
        """A node's control stream: requests for its agents from other nodes."""
        return f"{self.tag}:control:{check_node_name(node)}"

    def reply(self, request: str) -> str:
        """The list one control request's reply is pushed to (it expires)."""
        return f"{self.tag}:reply:{request}"

    def all(self) -> list[str]:
        """The fixed keys (not the per-channel and per-node ones)."""
        return [self.epoch, self.meta, self.stream, self.batches, self.holes, self.agents]
