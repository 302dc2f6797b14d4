"""The live clients of one stream, and the hot loop that hands them a batch.

A :class:`Group` is one agent's stream, or the all-agents stream. A client that is caught up and
has nothing special about it is in ``fast``, keyed by its socket, and :meth:`Group.send_fast` is
a walk over those sockets with one ``send`` each: the loop of the simplest fan-out there is,
touching no other object per client. (A loop over client objects calling a stored ``send``
measured 6-10 points of CPU more at 5,000 clients: two more cache misses per send; see
docs/PERFORMANCE.md.) Clients with a backlog, a replay overlap to skip or ``strip_ansi`` are in
``special`` and get their share one by one from the manager. ``fast_events`` counts the events
handed to every fast client, so that no per-client counter is touched either.
"""
from __future__ import annotations

import socket
from collections.abc import Iterator

from .connection import Connection

#: What did not go as planned in :meth:`Group.send_fast`: (socket, bytes written or -1, error).
Short = tuple[socket.socket, int, "OSError | None"]


class Group:
    """The live clients of one stream, split into the fast path and the rest."""

    __slots__ = ("fast", "fast_events", "special")

    def __init__(self) -> None:
        self.fast: dict[socket.socket, Connection] = {}
        self.special: set[Connection] = set()
        self.fast_events = 0

    def __len__(self) -> int:
        return len(self.fast) + len(self.special)

    def __iter__(self) -> Iterator[Connection]:
        yield from self.fast.values()
        yield from self.special

    def join(self, client: Connection) -> None:
        """A client goes live in this group (out of the fast path until :meth:`promote`)."""
        client.group = self
        self.special.add(client)

    def promote(self, client: Connection) -> None:
        """Move ``client`` into the fast path if nothing keeps it out."""
        if client.fast or not client.can_be_fast:
            return
        assert client.sock is not None
        self.special.discard(client)
        self.fast[client.sock] = client
        client.fast = True
        client.fast_since = self.fast_events

    def demote(self, client: Connection) -> None:
        """Take ``client`` out of the fast path, counting the events the group handed it."""
        if not client.fast or client.sock is None:
            return
        del self.fast[client.sock]
        self.special.add(client)
        client.sent += self.fast_events - client.fast_since
        client.fast = False

    def leave(self, client: Connection) -> None:
        """``client`` is closed (demote it first): forget it."""
        self.special.discard(client)

    def send_fast(self, payload: bytes) -> list[Short]:
        """Hand ``payload`` to every fast client in one ``send`` each: the server's hot path
        (1,000 clients x 100 events/s is 100,000 turns a second), one send and one comparison
        per client. Returns what did not go as planned (a short write, an error), for the
        caller to deal with after the loop; the clients stay in ``fast`` meanwhile."""
        size = len(payload)
        short: list[Short] = []
        for sock in self.fast:
            try:
                written = sock.send(payload)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                short.append((sock, -1, exc))
                continue
            if written != size:
                short.append((sock, written, None))
        return short
