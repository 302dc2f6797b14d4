"""The stream counters that ``/api/sse/stats`` and ``/metrics`` show, kept by the manager in one place."""
from __future__ import annotations

import bisect
import time

#: Upper bounds (seconds) of the flush-duration histogram's buckets: a flush is one hub
#: callback that hands a batch to every client, so anything past a few milliseconds is felt
#: by every stream of the server.
FLUSH_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    """Counts of observations by bucket (Prometheus-style: each bound counts what is at or
    below it; the last count is +Inf), their sum and number. ``observe`` is one bisect."""

    __slots__ = ("bounds", "counts", "count", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # not cumulative: one slot per bucket, +Inf last
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at or below it)`` per bucket, +Inf (``math.inf``) last."""
        total, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            total += count
            out.append((bound, total))
        return out


class StreamCounters:
    """Totals since the server started. Plain attributes: the flush adds to them once per batch."""

    __slots__ = ("bytes_delivered", "clients_connected_total", "clients_dropped_slow", "events_delivered",
                 "flush_times", "started_at")

    def __init__(self) -> None:
        self.started_at = time.time()
        self.events_delivered = 0
        self.bytes_delivered = 0
        self.clients_dropped_slow = 0
        self.clients_connected_total = 0
        #: How long each flush (one batch handed to every client of every stream) took.
        self.flush_times = Histogram(FLUSH_BUCKETS_S)

    @property
    def uptime_s(self) -> float:
        return round(time.time() - self.started_at, 3)
