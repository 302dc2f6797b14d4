"""Server-Sent Events: from the event log's bus to every client's socket.

- :mod:`~api.sse.frames`: the bytes of a frame (pure, once per event);
- :mod:`~api.sse.manager`: the :class:`SSEManager` (subscribe, replay, go live, flush, ping);
- :mod:`~api.sse.connection`: one client and its state (replaying, live, backlogged, closing,
  closed);
- :mod:`~api.sse.backlog`: what a client's socket has not taken yet, within bounds;
- :mod:`~api.sse.fanout`: the live clients of one stream and the hot loop over their sockets;
- :mod:`~api.sse.counters`: the totals ``/api/sse/stats`` shows;
- :mod:`~api.sse.handover`: the hand-written response head, and taking the socket from pywsgi;
- :mod:`~api.sse.screens`: the screen streams (a snapshot, then coalesced row diffs), apart
  from the event log's.
"""
from __future__ import annotations

from .manager import SSEManager

__all__ = ["SSEManager"]
