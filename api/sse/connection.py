"""One client's stream, and the state it is in.

::

    REPLAYING --> LIVE <--> BACKLOGGED
        |          |  \\        |
        |          |   CLOSING <+     (the stream ends once its backlog is written)
        v          v     v
      CLOSED <-----+-----+

``REPLAYING``: the request's greenlet is writing history. ``LIVE``: registered with its group,
nothing waiting (it may be in the group's fast path). ``BACKLOGGED``: the socket did not take a
whole batch; the rest waits in the backlog for the socket to become writable. ``CLOSING``: the
stream is over (the agent completed or was removed), the backlog is still being written.
``CLOSED``: the socket is gone. Every change goes through :meth:`Connection.change_state`,
which checks the edge against :data:`TRANSITIONS`.
"""
from __future__ import annotations

import enum
import socket
import time
from typing import TYPE_CHECKING, Any

from supervisor.events import rfc3339

from .backlog import Backlog

if TYPE_CHECKING:
    from .fanout import Group


class ConnectionState(enum.Enum):
    REPLAYING = "replaying"
    LIVE = "live"
    BACKLOGGED = "backlogged"
    CLOSING = "closing"
    CLOSED = "closed"


REPLAYING, LIVE, BACKLOGGED, CLOSING, CLOSED = ConnectionState

TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    # REPLAYING -> CLOSED: the replay ended the stream (a finished agent), or the client left.
    REPLAYING: frozenset({LIVE, CLOSED}),
    # LIVE -> CLOSED also for an end with nothing left to write.
    LIVE: frozenset({BACKLOGGED, CLOSING, CLOSED}),
    # BACKLOGGED -> CLOSED: dropped as slow, or the socket failed.
    BACKLOGGED: frozenset({LIVE, CLOSING, CLOSED}),
    CLOSING: frozenset({CLOSED}),
    CLOSED: frozenset(),
}


class Connection:
    """One stream client: its socket, its backlog, its counters and its state.

    ``fast`` tells whether it is in its group's fast path (see :class:`~api.sse.fanout.Group`);
    while it is, the events handed to it are counted by the group, and ``fast_since`` is where
    it joined. ``skip_until``: replayed up to this id, so older events still to come from the
    bus are skipped.
    """

    __slots__ = (
        "agent", "backlog", "connected_at", "fast", "fast_since", "group", "id", "plain", "read_watcher",
        "remote_addr", "sent", "skip_until", "sock", "state", "write_watcher",
    )

    def __init__(self, client_id: str, agent: str | None, remote_addr: str, plain: bool, backlog: Backlog) -> None:
        self.id = client_id
        self.agent = agent
        self.sock: socket.socket | None = None
        self.remote_addr = remote_addr
        self.connected_at = time.time()
        self.plain = plain
        self.backlog = backlog
        self.state = REPLAYING
        self.sent = 0  # events handed to the socket outside the fast path
        self.skip_until = 0
        self.read_watcher: Any = None
        self.write_watcher: Any = None
        self.group: Group | None = None  # set when live
        self.fast = False
        self.fast_since = 0

    def change_state(self, new: ConnectionState) -> None:
        """The one place the state changes; raises ``RuntimeError`` for an edge not in
        :data:`TRANSITIONS` (a bug in the manager)."""
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"stream client {self.id}: illegal state change {self.state.value} -> {new.value}")
        self.state = new

    @property
    def closed(self) -> bool:
        return self.state is CLOSED

    @property
    def can_be_fast(self) -> bool:
        """Nothing keeps it out of the fast path: live, caught up, and wanting the shared frames."""
        return self.state is LIVE and self.sock is not None and not self.plain and not self.skip_until

    @property
    def events_sent(self) -> int:
        """Events handed to the socket, including those counted by the group's fast path."""
        group = self.group
        return self.sent + (group.fast_events - self.fast_since if self.fast and group is not None else 0)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "connected_at": rfc3339(self.connected_at),
            "queued": self.backlog.events,
            "queued_bytes": self.backlog.bytes,
            "sent": self.events_sent,
            "remote_addr": self.remote_addr,
        }
