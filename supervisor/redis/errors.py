"""What a write to Redis can be refused for, as the scripts say it (see ``lua/append.lua``)."""
from __future__ import annotations

from ..exceptions import SupervisorError


class RedisRefused(SupervisorError):
    """Redis refused a write on purpose; nothing of it was written."""

    code = "redis_refused"
    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message)
        #: First ids of the batches of the same round trip that were written before this one.
        self.written: list[int] = []


class EpochChanged(RedisRefused):
    """Redis is not the one the node joined (wiped, replaced): rejoin before writing again."""

    code = "redis_epoch_changed"

    def __init__(self, current: str | None) -> None:
        super().__init__(f"the Redis epoch is now {current or 'unset'}")
        self.current = current


class Fenced(RedisRefused):
    """The node's lease expired or went to another holder: its writes are refused."""

    code = "node_fenced"

    def __init__(self, node: str) -> None:
        super().__init__(f"node {node!r} no longer holds its lease")
        self.node = node


class Rewound(RedisRefused):
    """Redis has issued fewer ids than the node has seen (a restore from an old snapshot)."""

    code = "redis_rewound"

    def __init__(self, seq: int, floor: int) -> None:
        super().__init__(f"Redis is at id {seq}, behind id {floor} that this node has seen")
        self.seq = seq
        self.floor = floor


class StaleBatch(RedisRefused):
    """A batch number older than the last one written under the same lease token."""

    code = "redis_stale_batch"

    def __init__(self, batch: int, last: int) -> None:
        super().__init__(f"batch {batch} is older than batch {last}, already written")
        self.batch = batch
        self.last = last


class LeaseHeld(RedisRefused):
    """Another process holds the node's lease: two nodes cannot have one name."""

    code = "node_name_taken"
    status = 409

    def __init__(self, node: str) -> None:
        super().__init__(f"node name {node!r} is held by another live process")
        self.node = node
