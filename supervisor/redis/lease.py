"""A node's lease: a key holding a random token, with a TTL the node renews.

The lease says the node is alive (others mark its agents ``lost`` when it expires) and fences
its writes: the append script refuses a batch whose token is not the one at the key, so a node
that was partitioned away or paused past its TTL cannot write once someone may have acted on
its death. The check runs inside Redis, in the same script as the write, so there is no window
between checking and writing. A node that finds itself fenced stops its agents and registers
again with a new token (:meth:`Lease.acquire`).
"""
from __future__ import annotations

import secrets

import redis

from .errors import LeaseHeld
from .keys import Keys
from .scripts import LEASE_RELEASE, LEASE_RENEW

#: Default lease TTL; the node renews it every third of that.
LEASE_TTL_MS = 15_000


class Lease:
    """The lease of ``node``; not held until :meth:`acquire`."""

    def __init__(self, client: redis.Redis, keys: Keys, node: str, ttl_ms: int = LEASE_TTL_MS) -> None:
        self.client = client
        self.key = keys.lease(node)
        self.node = node
        self.ttl_ms = ttl_ms
        self.token = ""

    def acquire(self) -> str:
        """Take the lease with a new token; raises :class:`LeaseHeld` while another holder's
        lease is alive (two live nodes cannot share a name)."""
        token = secrets.token_hex(16)
        if not self.client.set(self.key, token, nx=True, px=self.ttl_ms):
            raise LeaseHeld(self.node)
        self.token = token
        return token

    def renew(self) -> bool:
        """Extend the TTL; False when the lease expired or is someone else's (the node is fenced)."""
        return bool(self.token) and bool(LEASE_RENEW(self.client, [self.key], [self.token, self.ttl_ms]))

    def release(self) -> bool:
        """Give the lease back (at a clean shutdown), if it is still ours."""
        released = bool(self.token) and bool(LEASE_RELEASE(self.client, [self.key], [self.token]))
        self.token = ""
        return released
