"""The Redis backend of the event log on a real redis-server: what only a cluster has.

The contract tests every backend passes are parametrised (``make_log`` in conftest.py); these
are the cases of many nodes and of faults: one id sequence for all nodes and one order for all
subscribers, a trim past a node that was not reading, a wiped Redis, Redis away with and beyond
the buffer's bound.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor import events
from supervisor.events import Event
from supervisor.redis.append import Retention
from supervisor.redis.backend import RedisEventLog
from supervisor.redis.tailer import Tailer

from support.waiting import gwait


@pytest.fixture
def nodes(redis_server: Any, tmp_path: Path) -> Iterator[Any]:
    """``make(name, **options)``: nodes of one cluster on the test's redis-server."""
    made: list[RedisEventLog] = []

    def make(name: str, **options: Any) -> RedisEventLog:
        made.append(RedisEventLog(redis_server.url, name, data_dir=tmp_path / name, **options))
        return made[-1]

    yield make
    for log in made:
        log.close()


class Seen:
    """A subscriber that keeps the ids and the resyncs it was told about."""

    def __init__(self, log: RedisEventLog) -> None:
        self.ids: list[int] = []
        self.resyncs = 0
        self.subscription = log.subscribe(self)
        log.resyncs.connect(self.resynced, weak=False)

    def __call__(self, sender: object, event: Event) -> None:
        self.ids.append(event.id)

    def resynced(self, sender: object) -> None:
        self.resyncs += 1


def test_nodes_share_one_sequence_and_every_subscriber_one_order(nodes: Any) -> None:
    """Events appended on two nodes at once get one dense sequence of ids, and a subscriber on
    either node sees all of them, once each, in id order."""
    a, b = nodes("a"), nodes("b")
    seen_a, seen_b = Seen(a), Seen(b)
    for i in range(300):
        a.append("on-a", events.LOG, {"n": i})
        b.append("on-b", events.LOG, {"n": i})
    a.flush()
    b.flush()
    gwait(lambda: len(seen_a.ids) == 600 and len(seen_b.ids) == 600, timeout=10, what="600 events on both")
    assert seen_a.ids == seen_b.ids == list(range(1, 601))
    assert [e.data["n"] for e in b.read_after(0, "on-a").events] == list(range(300))
    assert b.last_id() == a.last_id() == 600


def test_a_trim_past_a_node_resets_its_copy_and_resumers_learn_the_exact_count(nodes: Any) -> None:
    """A node whose tailer did not read while the all-agents stream was trimmed past it resets
    its copy, resyncs its live streams once, and a reader from before the trim gets ``reset``
    with exactly what is gone."""
    # Retention above what a writer sends in one round trip (16 x 500), or a's own tailer falls
    # behind its writer too.
    a = nodes("a", retention=Retention(10_000, 10_000))
    b = nodes("b", retention=Retention(10_000, 10_000))
    seen = Seen(b)
    a.append("x", events.LOG, {})
    a.flush()
    gwait(lambda: seen.ids == [1], timeout=5, what="the first event on b")
    b.tailer.close()  # b stops reading, as in a long disconnect
    for i in range(30_000):
        a.append("x", events.LOG, {"n": i})
    a.flush()
    b.tailer = Tailer(b, b._tail_client, b.tailer.position)
    gwait(lambda: seen.ids[-1:] == [30_001], timeout=10, what="b to catch up")
    assert seen.resyncs == 1 and b.tailer.gaps == 1
    first_kept = int(a.client.xrange(a.keys.stream, count=1)[0][0].split(b"-")[0])
    assert seen.ids[1] == first_kept > 2  # the copy went on from the first entry still kept
    old = b.read_after(1)
    assert old.reset and old.missed == first_kept - 2 and old.first_available == first_kept
    assert [e.id for e in old.events] == list(range(first_kept, 30_002))


def test_a_wiped_redis_starts_a_new_epoch_and_ids_keep_increasing(nodes: Any, redis_server: Any) -> None:
    """FLUSHALL: the next events get ids above every id seen before, a resumer from the old
    epoch gets ``reset``, the live streams are resynced, and both nodes agree again."""
    a, b = nodes("a"), nodes("b")
    seen = Seen(b)
    for i in range(10):
        a.append("x", events.LOG, {"n": i})
    a.flush()
    gwait(lambda: len(seen.ids) == 10, timeout=5, what="10 events on b")
    assert redis_server.command(b"FLUSHALL") == b"+OK"
    after = a.append("x", events.LOG, {"n": "after"})
    a.flush()
    gwait(lambda: seen.ids[-1:] == [after.id], timeout=10, what="the new epoch's event on b")
    assert after.id > 10 and seen.resyncs >= 1
    old = b.read_after(5, "x")
    assert old.reset and old.missed == 5 and [e.id for e in old.events] == [after.id]
    assert not b.read_after(after.id - 1, "x").reset


def test_redis_away_buffers_in_order_and_counts_what_it_drops(nodes: Any, redis_server: Any) -> None:
    """Redis stopped while a node appends: the node is degraded, not stopped; events wait up
    to the bound and are written in order when Redis is back; what was dropped past the bound
    is counted, said on the all-agents stream, and resumers from before get ``reset``."""
    a = nodes("a", buffer_events=50)
    seen = Seen(a)
    a.append("x", events.LOG, {"n": -1})
    a.flush()
    redis_server.stop(save=True)
    for i in range(80):
        a.append("x", events.LOG, {"n": i})
    gwait(lambda: a.health.degraded, timeout=5, what="the node to say it is degraded")
    assert a.writer.dropped_total >= 30
    redis_server.start()
    a.flush(timeout=10)
    gwait(lambda: not a.health.degraded, timeout=10, what="the node to be healthy again")
    got = [e for e in a.read_after(1).events]
    said = [e.data for e in got if e.type == events.ERROR]
    assert {d["code"] for d in said} == {"storage_failed", "events_dropped"}  # Redis away; and the count
    assert sum(d.get("dropped", 0) for d in said) == a.writer.dropped_total
    logs = [e.data["n"] for e in got if e.type == events.LOG]
    assert logs == list(range(80 - len(logs), 80))  # the newest, in order, none twice
    assert len(logs) + a.writer.dropped_total == 80
    resumed = a.read_after(1, "x")
    assert resumed.reset and resumed.missed == a.writer.dropped_total
    assert seen.resyncs >= 1 and seen.ids == sorted(set(seen.ids))
