"""One greenlet reads what every run costs, at most once a second, for all agents of a server.

The registry starts its :class:`Sampler` and stops it at shutdown. While no run is watched the
greenlet waits on the containment (it costs nothing); while runs are, it takes one reading of all
of them per :data:`SAMPLE_INTERVAL_S`, yielding every few runs and every few hundred processes
read, so that no reading keeps the hub for long. What each reading costs the hub is kept in
:class:`SamplerCost` (``/api/sse/stats`` shows it; ``scripts/bench_sampler.py`` measures it).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import gevent

from .scope import TreeScope

if TYPE_CHECKING:
    from . import Containment

log = logging.getLogger(__name__)

#: The sampler's period: figures are at most this old, and never refreshed more often.
SAMPLE_INTERVAL_S = 1.0
#: Runs sampled between two yields to the hub.
RUNS_PER_YIELD = 16


class SamplerCost:
    """What sampling costs the hub: time spent reading, without the yields in between."""

    def __init__(self) -> None:
        self.samples = 0
        self.total_s = 0.0
        self.last_s = 0.0
        self.max_s = 0.0
        self.runs = 0
        self._mark = 0.0
        self._work = 0.0

    def begin(self) -> None:
        self._work, self._mark = 0.0, time.perf_counter()

    def pause(self) -> None:
        """A yield point: others run, and their time is not ours."""
        self._work += time.perf_counter() - self._mark
        gevent.sleep(0)
        self._mark = time.perf_counter()

    def finish(self, runs: int) -> None:
        self._work += time.perf_counter() - self._mark
        self.samples += 1
        self.total_s += self._work
        self.last_s = self._work
        self.max_s = max(self.max_s, self._work)
        self.runs = runs

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval_s": SAMPLE_INTERVAL_S,
            "samples": self.samples,
            "runs": self.runs,
            "last_ms": round(self.last_s * 1e3, 3),
            "mean_ms": round(self.total_s / self.samples * 1e3, 3) if self.samples else None,
            "max_ms": round(self.max_s * 1e3, 3),
        }


class Sampler:
    """The figures of every run of ``containment``. Not thread-safe: one hub."""

    def __init__(self, containment: Containment, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.containment = containment
        self.interval_s = interval_s
        self.cost = SamplerCost()
        self._greenlet: gevent.Greenlet[[], None] | None = None

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def start(self) -> None:
        """Start the greenlet (once; a second call does nothing)."""
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """End the greenlet and wait until it has ended. Idempotent."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=True, timeout=5)

    def _run(self) -> None:
        while True:
            self.containment.wait_for_runs()
            started = time.monotonic()
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - figures are worth a retry, not the sampler
                log.exception("sampling the runs failed")
            gevent.sleep(max(0.05, self.interval_s - (time.monotonic() - started)))

    def sample(self) -> None:
        """Read every run's figures once (and let go of ended runs whose processes are gone)."""
        containment, cost = self.containment, self.cost
        cost.begin()
        now = time.monotonic()
        scopes = containment.scopes()
        snapshot = containment.snapshot(cost.pause) if any(isinstance(s, TreeScope) for s in scopes) else None
        for count, scope in enumerate(scopes, 1):
            try:
                scope.sample(snapshot, now)
                if scope.closed:
                    containment.let_go(scope)
            except Exception:  # noqa: BLE001 - one run's odd files must not stop the figures of all
                log.exception("sampling run %s failed", scope.mark)
            if count % RUNS_PER_YIELD == 0:
                cost.pause()
        cost.finish(len(scopes))
