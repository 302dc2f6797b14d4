"""The stream counters that ``/api/sse/stats`` shows, kept by the manager in one place."""
from __future__ import annotations

import time


class StreamCounters:
    """Totals since the server started. Plain attributes: the flush adds to them once per batch."""

    __slots__ = ("bytes_delivered", "clients_connected_total", "clients_dropped_slow", "events_delivered",
                 "started_at")

    def __init__(self) -> None:
        self.started_at = time.time()
        self.events_delivered = 0
        self.bytes_delivered = 0
        self.clients_dropped_slow = 0
        self.clients_connected_total = 0

    @property
    def uptime_s(self) -> float:
        return round(time.time() - self.started_at, 3)
