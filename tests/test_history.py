"""Units for history (segments, retention, reading after an id, reload) and the event log."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import MakeLog
from supervisor.events import Event, rfc3339
from supervisor.history import AgentHistory


def commit(history: AgentHistory, batch: list[Event]) -> None:
    """What the event log's commit does with one history: write, keep in memory, show."""
    history.write(batch, 0.0)
    history.append(batch)
    history.visible_id = batch[-1].id


def fill(history: AgentHistory, ids: range) -> None:
    for i in ids:
        commit(history, [Event(i, "log", "a", {"n": i})])


@pytest.mark.parametrize("memory_size", [5, 1000])
def test_read_after_from_memory_or_disk(tmp_path: Path, memory_size: int) -> None:
    """Reads after any id give the same events whether memory reaches back or the files must."""
    history = AgentHistory("a", tmp_path, memory_size, segment_events=7)
    fill(history, range(1, 101, 2))  # this agent's ids are not consecutive
    assert [e.id for e in history.read_after(0)] == list(range(1, 101, 2))
    assert [e.id for e in history.read_after(50)] == list(range(51, 101, 2))
    assert [e.id for e in history.read_after(50, limit=3)] == [51, 53, 55]
    assert history.read_after(99) == [] and history.first_id == 1 and history.last_id == 99
    assert [e.id for e in history.last(3)] == [95, 97, 99]


def test_retention_deletes_oldest_segments_and_counts_missed(tmp_path: Path) -> None:
    """With max_events, old segments go, disk stays bounded, and missed events are counted."""
    history = AgentHistory("a", tmp_path, 10, max_events=20, segment_events=10)
    fill(history, range(1, 101))
    files = sorted(p.name for p in tmp_path.glob("events.*.jsonl"))
    assert 2 <= len(files) <= 3
    assert 20 <= len(history) <= 30
    first = history.first_id
    assert first is not None and first > 1
    assert history.missed_after(0) == first - 1
    assert history.missed_after(first - 1) == 0
    assert [e.id for e in history.read_after(0)] == list(range(first, 101))


def test_history_survives_reload_and_torn_lines(tmp_path: Path) -> None:
    """A new AgentHistory on the same directory has the same events; a torn last line is cut."""
    history = AgentHistory("a", tmp_path, 10, max_events=20, segment_events=10)
    fill(history, range(1, 51))
    history.close()
    last = sorted(tmp_path.glob("events.*.jsonl"))[-1]
    with open(last, "ab") as f:
        f.write(b'{"id":51,"type":"lo')  # a crash mid-write
    again = AgentHistory("a", tmp_path, 10, max_events=20, segment_events=10)
    assert again.last_id == 50 and [e.id for e in again.read_after(45)] == [46, 47, 48, 49, 50]
    assert again.missed_after(0) == history.missed_after(0)
    commit(again, [Event(51, "log", "a", {"n": 51})])
    again.close()
    assert [e.id for e in AgentHistory("a", tmp_path, 10).read_after(49)] == [50, 51]


def test_memory_only_history_forgets_and_says_how_much(tmp_path: Path) -> None:
    """Without a directory, history keeps the newest events and counts the forgotten ones."""
    history = AgentHistory("a", None, 5)
    fill(history, range(1, 21))
    assert [e.id for e in history.read_after(0)] == [16, 17, 18, 19, 20]
    assert history.missed_after(0) == 15 and history.missed_after(10) == 5


def test_event_log_resets_old_and_future_readers(make_log: MakeLog) -> None:
    """read_after flags ids older than retained history and ids from the future as a reset."""
    log = make_log(history_size=5)
    for i in range(10):
        log.append("a", "log", {"n": i})
    log.flush()
    old = log.read_after(2, "a")
    assert old.reset and old.missed == 3 and old.first_available == 6
    assert [e.id for e in old.events] == [6, 7, 8, 9, 10]
    future = log.read_after(500, "a")
    assert future.reset and future.missed == 0 and len(future.events) == 5
    assert not log.read_after(7, "a").reset


def test_ids_continue_after_reopening(make_log: MakeLog, tmp_path: Path) -> None:
    """A new event log on the same directory (with Redis: the same node again) never reuses an id."""
    first = make_log(tmp_path)
    for _ in range(3):
        first.append("a", "log", {})
    first.close()
    second = make_log(tmp_path)
    fourth = second.append("b", "log", {})
    second.flush()
    assert fourth.id > 3
    assert [e.id for e in second.read_after(0).events] == [1, 2, 3, fourth.id]


def test_memory_is_bounded_in_bytes_too(tmp_path: Path) -> None:
    """Huge events leave memory once it holds memory_bytes of them; disk still has them all."""
    history = AgentHistory("a", tmp_path, 10_000, memory_bytes=50_000)
    for i in range(1, 21):
        commit(history, [Event(i, "log", "a", {"line": "x" * 10_000})])
    assert len(history._memory) <= 5
    assert [e.id for e in history.read_after(0)] == list(range(1, 21))
    memory_only = AgentHistory("a", None, 10_000, memory_bytes=50_000)
    for i in range(1, 21):
        commit(memory_only, [Event(i, "log", "a", {"line": "x" * 10_000})])
    assert memory_only.missed_after(0) == 20 - len(memory_only._memory)


@pytest.mark.parametrize(
    "epoch",
    [0.0, 1.0005, 1763726400.0, 1763726400.123, 1763726400.9994999, 1763726400.9995,
     1763726400.99999949, 1763726400.9999995, 1763726459.9999999, 4102444799.999],
)
def test_timestamps_match_datetime_formatting(epoch: float) -> None:
    # The per-second cache must not change a single stamp, rounding and minute rollovers included.
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert rfc3339(epoch) == expected


def test_timestamps_follow_the_clock_across_seconds() -> None:
    stamps = [rfc3339(1763726400 + step / 7) for step in range(30)]
    assert stamps == sorted(stamps)
    assert stamps[0] == "2025-11-21T12:00:00.000Z"
    assert stamps[-1] == "2025-11-21T12:00:04.142Z"
