"""The Lua scripts on a real redis-server: ids, stream entries, retention, epoch, lease, fencing.

What the Redis backend will build on (issue 16): ids are the cluster's one strictly increasing
sequence, dense in the all-agents stream; every stream entry id is its event's id; a retried
batch is written once; a node without its lease writes nothing; a wiped, replaced or rewound
Redis is noticed before anything is written into it, and ids never go backwards for anyone.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from redis.crc import key_slot  # the test extra installs redis: missing, the module fails

from supervisor.events import Event
from supervisor.redis import entries, epoch
from supervisor.redis.append import RETRY_WINDOW, Appender, Pending, Retention
from supervisor.redis.connection import connect
from supervisor.redis.errors import EpochChanged, Fenced, LeaseHeld, Rewound, StaleBatch
from supervisor.redis.keys import Keys, check_node_name
from supervisor.redis.lease import Lease
from supervisor.redis.scripts import APPEND

from support.waiting import wait_for

KEYS = Keys()


@pytest.fixture
def client(redis_server: Any) -> Iterator[Any]:
    c = connect(redis_server.url)
    yield c
    c.close()


def make_node(client: Any, name: str, retention: Retention | None = None, ttl_ms: int = 15_000) -> Appender:
    """A node as the backend will make one: join the epoch, take the lease, write."""
    joined = epoch.join(client, KEYS)
    lease = Lease(client, KEYS, name, ttl_ms=ttl_ms)
    lease.acquire()
    return Appender(client, KEYS, lease, joined.id, retention or Retention(), floor=joined.seq)


def logs(channel: str, n: int, start: int = 0) -> list[Pending]:
    return [(channel, entries.envelope_tail("log", channel, {"line": f"line {start + i}"})) for i in range(n)]


def stream_ids(client: Any, key: str) -> list[int]:
    return [entries.event_id(entry_id) for entry_id, _ in client.xrange(key)]


def test_every_key_is_in_one_cluster_slot() -> None:
    """The fixed keys, channel streams and leases share the ``{as}`` hash tag, so one Redis
    Cluster slot serves them all; a prefix gives another tag, and bad names are refused."""
    keys = KEYS.all() + [KEYS.channel_stream("agent-1"), KEYS.channel_stream("@supervisor"), KEYS.lease("host-a")]
    assert {key_slot(key.encode()) for key in keys} == {key_slot(b"{as}")}
    other = Keys("team.b")
    assert other.stream == "{team.b}:stream"
    assert key_slot(other.stream.encode()) == key_slot(b"team.b")
    for bad in ("", "a{b}", "x" * 65, "a b"):
        with pytest.raises(ValueError):
            Keys(bad)
    with pytest.raises(ValueError):
        check_node_name("node:1")


def test_a_batch_gets_consecutive_ids_and_stream_entries_under_them(client: Any) -> None:
    """One script call: the first id back, the batch's ids consecutive from it, each event in
    the all-agents stream (with its channel) and in its channel's stream under entry id
    ``<id>-0``, its envelope byte for byte the embedded backend's JSON."""
    node = make_node(client, "a")
    batch = logs("agent-1", 3) + [("@supervisor", entries.envelope_tail("agent_added", "agent-2", {"node": "a"}))]
    batch += logs("agent-2", 2)
    first = node.append(batch)
    assert first == 1
    assert node.append(logs("agent-1", 2, start=3)) == 7
    assert node.floor == 8

    all_entries = client.xrange(KEYS.stream)
    assert [entries.event_id(i) for i, _ in all_entries] == list(range(1, 9))
    assert [entries.channel(f) for _, f in all_entries] == ["agent-1"] * 3 + ["@supervisor"] + ["agent-2"] * 2 + [
        "agent-1"] * 2
    assert stream_ids(client, KEYS.channel_stream("agent-1")) == [1, 2, 3, 7, 8]
    assert stream_ids(client, KEYS.channel_stream("agent-2")) == [5, 6]
    assert stream_ids(client, KEYS.channel_stream("@supervisor")) == [4]

    event = entries.to_event(*all_entries[3])
    same = Event(4, "agent_added", "agent-2", {"node": "a"}, event.timestamp)
    assert event.json == same.json
    assert (event.id, event.type, event.agent_name, event.data) == (4, "agent_added", "agent-2", {"node": "a"})
    _, channel_fields = client.xrange(KEYS.channel_stream("agent-1"), min="7-0", max="7-0")[0]
    assert channel_fields[b"event"] == all_entries[6][1][b"event"]
    assert client.hget(KEYS.meta, "seq") == b"8"


def test_two_concurrent_appenders_share_one_strictly_increasing_sequence(redis_server: Any) -> None:
    """Two nodes, each on its own connection, append batches of random sizes at the same time:
    their id ranges interleave and never overlap, and together they are exactly 1..N, which is
    also the all-agents stream from end to end."""
    clients = [connect(redis_server.url), connect(redis_server.url)]
    nodes = [make_node(clients[0], "a"), make_node(clients[1], "b")]
    ranges: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}

    def run(node: Appender, seed: int) -> None:
        rng = random.Random(seed)
        for batch_no in range(150):
            size = rng.randint(1, 40)
            first = node.append(logs(f"{node.lease.node}-agent", size, start=batch_no * 100))
            ranges[node.lease.node].append((first, first + size - 1))
            # A reply already in the socket does not yield, so on a busy machine one node could
            # run ahead for long stretches: give the other a turn between batches.
            gevent.sleep(0)

    gevent.joinall([gevent.spawn(run, nodes[0], 1), gevent.spawn(run, nodes[1], 2)], raise_error=True, timeout=30)
    every = sorted(ranges["a"] + ranges["b"])
    total = every[-1][1]
    assert [i for lo, hi in every for i in range(lo, hi + 1)] == list(range(1, total + 1))
    switches = sum(1 for x, y in zip(every, every[1:]) if (x in ranges["a"]) != (y in ranges["a"]))
    assert switches >= 10, f"the appenders hardly ran at the same time ({switches} switches)"
    assert stream_ids(clients[0], KEYS.stream) == list(range(1, total + 1))
    for name in ("a", "b"):
        own = stream_ids(clients[0], KEYS.channel_stream(f"{name}-agent"))
        assert own == [i for lo, hi in sorted(ranges[name]) for i in range(lo, hi + 1)]
    for c in clients:
        c.close()


def test_pipelined_batches_keep_their_order(client: Any) -> None:
    """``append_many`` sends up to RETRY_WINDOW batches in one round trip: first ids in order,
    consecutive ranges."""
    node = make_node(client, "a")
    batches = [logs("x", n) for n in range(1, RETRY_WINDOW + 1)]
    firsts = node.append_many(batches)
    expected, at = [], 1
    for batch in batches:
        expected.append(at)
        at += len(batch)
    assert firsts == expected
    assert stream_ids(client, KEYS.stream) == list(range(1, at))
    with pytest.raises(ValueError):
        node.append_many([logs("x", 1)] * (RETRY_WINDOW + 1))


def test_a_batch_whose_reply_was_lost_is_written_once(client: Any) -> None:
    """The batch reached Redis but its reply never reached the node (the connection broke in
    between): sending the same batch again returns its ids without writing it twice."""
    node = make_node(client, "a")
    assert node.append(logs("x", 5)) == 1
    batch = logs("x", 3, start=5)
    # What the node's connection sent before it broke: this batch, under its batch number.
    keys, args = node._call(batch, node._next_batch)
    lost = client.connection_pool.make_connection()
    lost.send_command("EVALSHA", APPEND.sha, len(keys), *keys, *args)
    lost.disconnect()  # the reply is never read
    wait_for(lambda: client.xlen(KEYS.stream) == 8, timeout=5, what="the batch to be in Redis")
    assert node.append(batch) == 6  # the same batch again: its first id, nothing added
    assert stream_ids(client, KEYS.stream) == list(range(1, 9))
    assert node.append(logs("x", 1, start=8)) == 9  # and the next batch goes on from there


def test_retries_older_than_the_window_are_refused(client: Any) -> None:
    """A batch number older than the last RETRY_WINDOW batches cannot be answered exactly: the
    script refuses it (STALE) rather than write it again."""
    node = make_node(client, "a")
    for _ in range(RETRY_WINDOW + 2):
        node.append(logs("x", 1))
    node._next_batch = 1  # a node that lost track of its numbering (a bug) tries batch 1 again
    with pytest.raises(StaleBatch):
        node.append(logs("x", 1))
    assert client.xlen(KEYS.stream) == RETRY_WINDOW + 2


def test_retention_trims_each_stream_and_leaves_the_ids_dense(client: Any) -> None:
    """``MAXLEN ~`` keeps about the configured number of entries per stream (at least that
    many, at most one stream node more). The all-agents stream stays dense, so the count of
    trimmed events after any id is exact: first retained id - 1 - id."""
    node = make_node(client, "a", Retention(all_events=1000, per_channel=300))
    for i in range(40):
        node.append(logs("busy", 80, start=i * 80) + logs("quiet", 2, start=i * 2))
    info = client.xinfo_stream(KEYS.stream)
    assert 1000 <= info["length"] <= 1100
    first = entries.event_id(info["first-entry"][0])
    last = entries.event_id(info["last-entry"][0])
    assert last == 40 * 82
    assert info["length"] == last - first + 1  # dense: no id missing after the first retained
    assert info["entries-added"] - info["length"] == first - 1  # trimmed = ids before it
    busy = client.xinfo_stream(KEYS.channel_stream("busy"))
    assert 300 <= busy["length"] <= 400
    assert busy["entries-added"] == 40 * 80
    assert client.xlen(KEYS.channel_stream("quiet")) == 80  # under its bound: all of it


def test_no_retention_keeps_everything(client: Any) -> None:
    """A retention of 0 means no trimming at all."""
    node = make_node(client, "a", Retention(all_events=0, per_channel=0))
    for i in range(10):
        node.append(logs("x", 200, start=i * 200))
    assert client.xlen(KEYS.stream) == 2000
    assert client.xlen(KEYS.channel_stream("x")) == 2000


def test_a_node_without_its_lease_writes_nothing(client: Any) -> None:
    """Fencing: once the lease has expired, or another holder took it, the script refuses the
    batch (FENCED) and writes nothing; a new lease lets the node write again."""
    node = make_node(client, "a", ttl_ms=200)
    assert node.append(logs("x", 2)) == 1
    wait_for(lambda: client.exists(KEYS.lease("a")) == 0, timeout=5, what="the lease to expire")
    assert node.lease.renew() is False
    with pytest.raises(Fenced):
        node.append(logs("x", 2))
    usurper = Lease(client, KEYS, "a")
    usurper.acquire()
    with pytest.raises(Fenced):
        node.append(logs("x", 2))
    assert client.xlen(KEYS.stream) == 2
    assert client.hget(KEYS.meta, "seq") == b"2"
    assert usurper.release() is True
    node.lease.acquire()  # the node registers again, with a new token
    assert node.append(logs("x", 1)) == 3


def test_a_live_lease_keeps_its_name_and_renews(client: Any) -> None:
    """Two live processes cannot take one node name; renewing extends the TTL; releasing
    frees the name only for the holder."""
    lease = Lease(client, KEYS, "a", ttl_ms=5000)
    token = lease.acquire()
    with pytest.raises(LeaseHeld):
        Lease(client, KEYS, "a").acquire()
    client.pexpire(KEYS.lease("a"), 1000)
    assert lease.renew() is True
    assert client.pttl(KEYS.lease("a")) > 4000
    assert client.get(KEYS.lease("a")) == token.encode()
    stranger = Lease(client, KEYS, "a")
    stranger.token = "not-the-token"
    assert stranger.release() is False
    assert lease.release() is True
    assert client.exists(KEYS.lease("a")) == 0


def test_flushall_changes_the_epoch_and_ids_stay_increasing(client: Any) -> None:
    """After ``FLUSHALL`` the script refuses the old epoch (EPOCH) and writes nothing; joining
    again with the highest id the node knows starts a new epoch whose ids are above it."""
    node = make_node(client, "a")
    old = epoch.current(client, KEYS)
    node.append(logs("x", 50))
    client.flushall()
    with pytest.raises(EpochChanged) as refused:
        node.append(logs("x", 1))
    assert refused.value.current is None
    assert client.dbsize() == 0
    joined = epoch.join(client, KEYS, floor=node.floor)
    assert joined.id != old
    assert joined.base == 50 + epoch.EPOCH_GAP
    node.epoch = joined.id
    node.lease.acquire()  # the lease went with the data
    assert node.append(logs("x", 1)) == joined.base + 1


def test_a_restarted_empty_redis_is_a_new_epoch(redis_server: Any) -> None:
    """The same for a Redis process restarted without its data, scripts cache and all."""
    c = connect(redis_server.url)
    node = make_node(c, "a")
    old = epoch.current(c, KEYS)
    node.append(logs("x", 10))
    redis_server.restart()
    with pytest.raises(EpochChanged):
        node.append(logs("x", 1))
    joined = epoch.join(c, KEYS, floor=node.floor)
    assert joined.id != old and joined.base > 10
    c.close()


def test_a_redis_back_from_an_old_snapshot_is_noticed(redis_server: Any) -> None:
    """Redis killed and started from a snapshot older than what the node has seen: same epoch,
    fewer ids. The script refuses (REWOUND) rather than hand out those ids again, and joining
    starts a new epoch above them."""
    c = connect(redis_server.url)
    node = make_node(c, "a", ttl_ms=600_000)
    old = epoch.current(c, KEYS)
    node.append(logs("x", 10))
    redis_server.snapshot()
    node.append(logs("x", 10, start=10))
    redis_server.kill()
    redis_server.start()
    assert epoch.current(c, KEYS) == old
    assert c.hget(KEYS.meta, "seq") == b"10"
    with pytest.raises(Rewound) as refused:
        node.append(logs("x", 1))
    assert (refused.value.seq, refused.value.floor) == (10, 20)
    joined = epoch.join(c, KEYS, floor=node.floor)
    assert joined.id != old and joined.base == 20 + epoch.EPOCH_GAP
    node.epoch = joined.id
    assert node.append(logs("x", 1)) == joined.base + 1
    c.close()


def test_joining_an_epoch_is_the_same_for_every_node(client: Any) -> None:
    """The first node starts the epoch; later ones join it unchanged, whatever they knew below
    its sequence; a node that knows more than Redis starts a new one (exactly one)."""
    first = epoch.join(client, KEYS)
    assert (first.base, first.seq) == (0, 0)
    assert epoch.join(client, KEYS) == first
    node = make_node(client, "a")
    node.append(logs("x", 30))
    again = epoch.join(client, KEYS, floor=25)
    assert (again.id, again.base, again.seq) == (first.id, 0, 30)
    ahead = epoch.join(client, KEYS, floor=31)
    assert ahead.id != first.id and ahead.base == 31 + epoch.EPOCH_GAP
    assert epoch.join(client, KEYS, floor=31) == ahead  # a second node with the same knowledge joins it


def test_scripts_are_loaded_again_after_a_script_flush(client: Any) -> None:
    """``SCRIPT FLUSH`` (or a restarted Redis) empties the script cache: the next call, and the
    next pipeline of calls, load the script and go on."""
    node = make_node(client, "a")
    node.append(logs("x", 1))
    client.script_flush()
    assert node.append(logs("x", 1)) == 2
    client.script_flush()
    assert node.append_many([logs("x", 1), logs("x", 2)]) == [3, 4]
