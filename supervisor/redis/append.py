"""Writing batches of events into Redis: ids from the cluster's sequence, one script per batch.

:class:`Appender` sends each batch as one call of ``lua/append.lua``, which takes the next ids,
adds every event to the all-agents stream and to its channel's stream (entry id ``<id>-0``,
trimmed with ``MAXLEN ~``) and returns the first id; the batch's ids are consecutive from it.
Each batch carries a number, and the script remembers the last :data:`RETRY_WINDOW` of them, so
a batch whose reply was lost (a broken connection) can be sent again and is written once:
retry with the same batch, never a different one.

The script refuses a batch, writing nothing, when the node's lease is gone (:class:`Fenced`),
when Redis is no longer in the node's epoch (:class:`EpochChanged`) or has fewer ids than the
node knows (:class:`Rewound`); see :mod:`supervisor.redis.epoch` and :mod:`.lease`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from .errors import EpochChanged, Fenced, RedisRefused, Rewound, StaleBatch
from .keys import Keys
from .lease import Lease
from .scripts import APPEND

#: Batches the script remembers per node (``% 16`` in ``lua/append.lua``): the most that may
#: be in flight at once and still be retried exactly.
RETRY_WINDOW = 16

#: One event waiting for its id: (channel, envelope tail from :func:`.entries.envelope_tail`).
Pending = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Retention:
    """``MAXLEN ~`` of the all-agents stream and of each channel's stream (0: keep all).
    Redis trims whole nodes of a stream, so a stream holds at least this many, and at most
    about one node (``stream-node-max-entries``, 100 by default) more."""

    all_events: int = 100_000
    per_channel: int = 10_000


class Appender:
    """The writer of one node: its lease, its epoch and the highest id it knows (``floor``).

    Batches must reach Redis in the order of their numbers, so one greenlet owns an appender.
    """

    def __init__(self, client: redis.Redis, keys: Keys, lease: Lease, epoch: str,
                 retention: Retention = Retention(), floor: int = 0) -> None:
        self.client = client
        self.keys = keys
        self.lease = lease
        self.epoch = epoch
        self.retention = retention
        #: The highest id this node has seen (appended or read); Redis must be at least there.
        self.floor = floor
        self._token = ""
        self._next_batch = 1

    def append(self, batch: Sequence[Pending]) -> int:
        """Write one batch; the first id (the others follow it). Raises a
        :class:`~.errors.RedisRefused` when refused, :class:`redis.RedisError` when Redis
        cannot be reached (then retry with the same batch)."""
        return self.append_many([batch])[0]

    def append_many(self, batches: Sequence[Sequence[Pending]]) -> list[int]:
        """Write up to :data:`RETRY_WINDOW` batches in one round trip; their first ids. A
        refusal raises after the batches before it were written (``exc.written`` holds their
        first ids); a connection error leaves it unknown which were: retry with all of them."""
        if not 0 < len(batches) <= RETRY_WINDOW:
            raise ValueError(f"1 to {RETRY_WINDOW} batches at a time (got {len(batches)})")
        if self.lease.token != self._token:  # a new lease: its batches count from 1
            self._token, self._next_batch = self.lease.token, 1
        calls = [self._call(batch, self._next_batch + i) for i, batch in enumerate(batches)]
        written: list[int] = []
        for batch, reply in zip(batches, APPEND.many(self.client, calls)):
            if isinstance(reply, Exception):
                refusal = self._refusal(reply)
                if isinstance(refusal, RedisRefused):
                    refusal.written = written
                raise refusal
            first = int(reply)
            written.append(first)
            self._next_batch += 1
            self.floor = max(self.floor, first + len(batch) - 1)
        return written

    def _call(self, batch: Sequence[Pending], number: int) -> tuple[list[str], list[str | int]]:
        if not batch:
            raise ValueError("an empty batch")
        keys = [self.keys.epoch, self.keys.meta, self.lease.key, self.keys.batches, self.keys.stream]
        channels: dict[str, int] = {}
        pairs: list[str | int] = []
        for channel, tail in batch:
            index = channels.get(channel)
            if index is None:
                index = channels[channel] = len(channels) + 1
                keys.append(self.keys.channel_stream(channel))
            pairs.append(index)
            pairs.append(tail)
        args: list[str | int] = [self.epoch, self.lease.node, self._token, number, self.floor,
                                 self.retention.all_events, self.retention.per_channel, len(channels)]
        args.extend(channels)
        args.extend(pairs)
        return keys, args

    def _refusal(self, reply: Exception) -> Exception:
        """The script's error reply as one of ours; anything else as it came."""
        if not isinstance(reply, redis.ResponseError):
            return reply
        word, _, rest = str(reply).partition(" ")
        refusal: RedisRefused
        if word == "EPOCH":
            refusal = EpochChanged(rest or None)
        elif word == "FENCED":
            refusal = Fenced(self.lease.node)
        elif word == "REWOUND":
            refusal = Rewound(int(rest), self.floor)
        elif word == "STALE":
            refusal = StaleBatch(self._next_batch, int(rest))
        else:
            return reply
        return refusal
