"""supervisor.redis.connection: redis-py on gevent sockets never blocks the hub.

The proof is a ticker: a greenlet that wakes every 50 ms and records how late each wake-up is.
While another greenlet of the same hub waits on Redis (``XREAD BLOCK``, a connect, a pipeline
of 10,000 commands, a server that never answers), no wake-up may be more than 20 ms late. A
control test shows the ticker does catch a blocked hub: redis-py's own connection class, with
a stdlib socket, holds it for the whole ``XREAD BLOCK``.
"""
from __future__ import annotations

import gc
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import gevent
import gevent.socket
import pytest

import redis  # the test extra installs it: missing, the module fails rather than skips
from supervisor.redis.connection import connect, pipelined

from support.waiting import wait_for

#: The most a 50 ms ticker may be late while Redis is waited on (issue 16).
MAX_LATE_S = 0.020


def _run_queue_wait() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (``/proc`` schedstat)."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


class Ticker:
    """Wakes every ``period`` on the hub and records each wake-up's lateness.

    On a shared 2-core machine a wake-up is also late when other processes have the CPUs: the
    thread was runnable and waited in the kernel's run queue. That wait is measured (schedstat)
    and taken off: what is left is the time the hub itself was held, by a blocking call or by
    our own CPU work, which is what these tests are about. ``raw`` keeps the uncorrected worst.

    The test process's own garbage collector is kept out as the server keeps it out: the
    server freezes its start-up objects (``gc.freeze`` in api/server.py), so a full collection
    there walks only what was made since; a pytest worker holds the whole collected suite
    (120,000 objects: a full collection takes about 40 ms, more under load), and such a pass
    landed in a tick now and then (the pipeline test failed 2 runs in 3 of the full suite, the
    hub "held" 55-69 ms after the run-queue wait was taken off). The ticker freezes
    what exists when it starts, as the server does, and unfreezes it at the end; the time the
    collector ran while it ticked is reported with a failure.
    """

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.lateness: list[float] = []
        self.raw = 0.0
        self.gc_s = 0.0
        self._gc_started = 0.0
        self._greenlet: gevent.Greenlet[Any, Any] | None = None

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        else:
            self.gc_s += time.monotonic() - self._gc_started

    def _run(self) -> None:
        due = time.monotonic() + self.period
        while True:
            waited = _run_queue_wait()
            gevent.sleep(max(0.0, due - time.monotonic()))
            late = time.monotonic() - due
            self.raw = max(self.raw, late)
            self.lateness.append(max(0.0, late - (_run_queue_wait() - waited)))
            due = max(due + self.period, time.monotonic())

    @property
    def worst(self) -> float:
        return max(self.lateness, default=0.0)

    def __enter__(self) -> Ticker:
        gc.freeze()
        gc.callbacks.append(self._on_gc)
        self._greenlet = gevent.spawn(self._run)
        gevent.sleep(0)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._greenlet is not None
        self._greenlet.kill()
        gc.callbacks.remove(self._on_gc)
        gc.unfreeze()

    def check(self, min_ticks: int) -> None:
        assert len(self.lateness) >= min_ticks, f"only {len(self.lateness)} ticks: the hub was held"
        assert self.worst <= MAX_LATE_S, (
            f"the hub held a tick {self.worst * 1000:.1f} ms ({self.raw * 1000:.1f} ms late before taking off "
            f"the run-queue wait; {len(self.lateness)} ticks; the collector ran {self.gc_s * 1000:.1f} ms)")


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


@pytest.fixture(params=["unix", "tcp"])
def url(request: pytest.FixtureRequest, redis_server: Any) -> str:
    """The test server by unix socket and by TCP (name resolution included: ``localhost``)."""
    if request.param == "unix":
        return str(redis_server.url)
    return f"redis://localhost:{redis_server.port}/0"


def test_connections_use_gevent_sockets(url: str) -> None:
    """Every connection the client makes is a gevent socket, TCP and unix alike, read by the
    hiredis parser (5x faster than the pure-Python one on a 10,000-entry XRANGE)."""
    from redis._parsers import _HiredisParser

    client = connect(url)
    assert client.ping() is True
    (connection,) = client.connection_pool._available_connections  # the one PING used, back in the pool
    assert isinstance(connection._sock, gevent.socket.socket)
    assert isinstance(connection._parser, _HiredisParser)
    client.close()


@pytest.mark.slow
def test_xread_block_does_not_hold_the_hub(url: str) -> None:
    """A ``XREAD BLOCK 1000`` that waits its whole second leaves a 50 ms ticker on time."""
    client = connect(url, socket_timeout=3.0)
    client.ping()
    with Ticker() as ticker:
        reply, elapsed = timed(lambda: client.xread({"empty": "$"}, block=1000))
    client.close()
    assert not reply
    assert elapsed >= 0.95, f"XREAD came back after {elapsed:.3f} s, not after blocking"
    ticker.check(min_ticks=15)


def test_xread_block_wakes_for_an_xadd_from_the_same_hub(redis_server: Any) -> None:
    """Two greenlets of one client share the hub, each on its own connection: an ``XADD`` from
    one wakes the other's ``XREAD BLOCK`` at once, not when its block time is up."""
    client = connect(redis_server.url, socket_timeout=10.0)
    reader = gevent.spawn(lambda: timed(lambda: client.xread({"s": "$"}, block=8000)))
    wait_for(lambda: client.info("clients")["blocked_clients"] == 1, timeout=5, what="XREAD to block")
    client.xadd("s", {"line": "hello"}, id="7-0")
    reply, elapsed = reader.get(timeout=5)
    client.close()
    assert reply == [[b"s", [(b"7-0", {b"line": b"hello"})]]]
    assert elapsed < 2.0, f"XREAD woke after {elapsed:.3f} s"


def test_a_stdlib_socket_does_hold_the_hub(redis_server: Any) -> None:
    """The control: redis-py's own unix connection, a stdlib socket, freezes the ticker for a
    whole ``XREAD BLOCK`` (so the tests above can fail)."""
    client = redis.Redis(unix_socket_path=str(redis_server.socket_path), socket_timeout=3.0)
    client.ping()
    with Ticker() as ticker:
        gevent.sleep(0.12)
        client.xread({"empty": "$"}, block=400)
        gevent.sleep(0.12)
    client.close()
    assert ticker.worst >= 0.3, f"the worst tick was only {ticker.worst * 1000:.1f} ms late"


def test_connecting_does_not_hold_the_hub(redis_server: Any) -> None:
    """Fresh TCP connections, at least fifty, each resolving ``localhost``, connecting, doing
    redis-py's handshake and a ``PING``, leave the ticker on time."""
    url = f"redis://localhost:{redis_server.port}/0"
    with Ticker() as ticker:
        deadline = time.monotonic() + 0.6
        connections = 0
        while time.monotonic() < deadline or connections < 50:
            client = connect(url)
            assert client.ping() is True
            client.close()
            connections += 1
    ticker.check(min_ticks=10)


def test_a_connect_that_hangs_times_out_on_the_hub() -> None:
    """A server whose accept queue is full never completes the handshake: the connect gives up
    after ``connect_timeout`` with ``redis.TimeoutError``, and the ticker stays on time."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))  # fills the queue of length 1
    try:
        client = connect(f"redis://127.0.0.1:{port}/0", connect_timeout=0.5)
        with Ticker() as ticker:
            start = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                client.ping()
            elapsed = time.monotonic() - start
            gevent.sleep(0.1)
        assert 0.45 <= elapsed < 2.0, f"the connect gave up after {elapsed:.3f} s"
        ticker.check(min_ticks=8)
    finally:
        queued.close()
        listener.close()


def test_a_pipeline_of_10k_xadds_does_not_hold_the_hub(redis_server: Any) -> None:
    """``pipelined`` sends 10,000 ``XADD`` in chunks and yields between them: all are written,
    in order, and the ticker stays on time."""
    client = connect(redis_server.url)
    client.ping()
    with Ticker() as ticker:
        gevent.sleep(0.06)
        replies = pipelined(client, (("XADD", "s", f"{i}-0", "line", "x" * 100) for i in range(1, 10_001)))
        gevent.sleep(0.06)
    assert replies == [f"{i}-0".encode() for i in range(1, 10_001)]
    assert client.xlen("s") == 10_000
    client.close()
    ticker.check(min_ticks=2)


@pytest.mark.slow
def test_a_server_that_stops_answering_times_out_on_the_hub(redis_server: Any) -> None:
    """A paused redis-server (SIGSTOP: connections are accepted, nothing is answered) makes a
    command fail with ``redis.TimeoutError`` after ``socket_timeout``, while the ticker stays on
    time; once the server resumes, the same client works again."""
    client = connect(redis_server.url, socket_timeout=0.5)
    client.ping()
    redis_server.pause()
    try:
        with Ticker() as ticker:
            with pytest.raises(redis.TimeoutError):
                client.ping()
            with pytest.raises(redis.TimeoutError):  # a new connection too: the handshake hangs
                connect(redis_server.url, socket_timeout=0.5).ping()
        ticker.check(min_ticks=15)
    finally:
        redis_server.resume()
    assert client.ping() is True
    client.close()


def test_a_dead_server_fails_fast(redis_server: Any) -> None:
    """With redis-server gone, a command fails at once with ``redis.ConnectionError`` (no
    retry, no sleep); after a restart the same client reconnects by itself."""
    client = connect(redis_server.url)
    client.ping()
    redis_server.stop()
    start = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert time.monotonic() - start < 0.5
    redis_server.start()
    assert client.ping() is True
    client.close()


def test_tls_urls_are_refused_until_they_are_cooperative() -> None:
    """``rediss://`` would wrap the socket in stdlib ssl (blocking): refused with a reason."""
    with pytest.raises(ValueError, match="gevent.ssl"):
        connect("rediss://localhost:6380/0")
