"""Waiting on a condition with a deadline: from a test thread, or from inside the gevent hub."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _poll(predicate: Callable[[], T], timeout: float, what: str, pause: Callable[[], object]) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        pause()


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail the test with
    ``what`` after ``timeout`` seconds. Sleeps the thread between polls: for tests that talk to
    another process."""
    return _poll(predicate, timeout, what, lambda: time.sleep(interval))


def gwait(predicate: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
    """:func:`wait_for` for in-process tests: lets the gevent hub run between polls (agents,
    streams and timers of this process make progress only then)."""
    import gevent

    return _poll(predicate, timeout, what, lambda: gevent.sleep(0.01))
