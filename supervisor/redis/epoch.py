"""The epoch: which Redis a node's ids belong to.

Clients resume with a bare integer (``Last-Event-ID``), so a Redis that was wiped, replaced or
restored from an old snapshot must never hand out an id a client already has. The epoch is a
random id at one key. A node joins it at start (:func:`join`) and its appends name it; when the
append script answers ``EPOCH`` or ``REWOUND``, the node joins again with the highest id it
knows as the floor, and a new epoch starts above that floor (``lua/rebase.lua``). Readers whose
id is below the epoch's ``base`` get a ``reset``: those ids are from a Redis that is gone.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis

from .keys import Keys
from .scripts import REBASE

#: How far above the highest id a node knows a new epoch starts (see ``lua/rebase.lua``): the
#: most another node may lag behind in reading the stream, in events, without an id of the old
#: epoch coming back in the new one. A million events is 20 s at 50,000 events/s.
EPOCH_GAP = 1_000_000


@dataclass(frozen=True, slots=True)
class Epoch:
    """An epoch as a node joined it: ``id``, ``base`` (its ids are above it) and ``seq`` (the
    last id issued when the node joined)."""

    id: str
    base: int
    seq: int


def join(client: redis.Redis, keys: Keys, floor: int = 0, gap: int = EPOCH_GAP) -> Epoch:
    """Join the current epoch, or start one if there is none or Redis holds fewer ids than
    ``floor`` (the highest id this node has seen; 0 for a node that has seen none)."""
    epoch, base, seq = REBASE(client, [keys.epoch, keys.meta, keys.stream], [secrets.token_hex(8), floor, gap])
    return Epoch(_text(epoch), int(base), int(seq))


def current(client: redis.Redis, keys: Keys) -> str | None:
    """The epoch Redis holds now (None: none, a new or wiped Redis)."""
    value = client.get(keys.epoch)
    return None if value is None else _text(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
