"""Holes: events a node had to drop (never written, never given an id), counted for resumers.

A node that cannot reach Redis keeps its events in memory up to a bound and drops the oldest
beyond it; a fenced node drops what it could not write (:mod:`.writer`). Those events have no
ids, so nothing in the streams shows where they were: before writing again the node records,
per channel, how many it dropped after the last id Redis had issued (``lua/hole.lua``, one hash
``{as}:holes``). A reader whose id is at or before that id gets ``reset`` with the count
(:mod:`.cursor`). Every node keeps the hash in memory and reloads it when the ``error`` event
``events_dropped`` that follows a hole comes by its tailer, so that a replay never asks Redis.

Holes are never deleted: one field per channel per outage, small, but they add up (see the open
questions in docs/REDIS.md).
"""
from __future__ import annotations

from typing import cast

import redis

from .keys import Keys
from .scripts import HOLE


class Holes:
    """The cluster's holes, as this node last read them."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._holes: list[tuple[int, str, int]] = []  # (after id, channel, count)

    def load(self) -> None:
        holes = []
        stored = cast(dict[bytes, bytes], self.client.hgetall(self.keys.holes))
        for field, value in stored.items():
            _, _, channel = field.decode().partition(" ")
            seq, _, count = value.decode().partition(" ")
            holes.append((int(seq), channel, int(count)))
        self._holes = holes

    def record(self, token: str, dropped: dict[str, int]) -> None:
        """Write what this node dropped, as a hole after Redis's current id (``token`` names the
        episode: a retried call overwrites, never doubles)."""
        args: list[str | int] = [token]
        for channel, count in dropped.items():
            args += [channel, count]
        HOLE(self.client, [self.keys.meta, self.keys.holes], args)
        self.load()

    def missed_after(self, after_id: int, channel: str | None) -> int:
        """Events dropped that a reader at ``after_id`` (of one channel, or of all) has not seen."""
        return sum(count for seq, name, count in self._holes
                   if after_id <= seq and (channel is None or name == channel))
