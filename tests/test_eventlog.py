"""The event log's bus and contract: subscriptions, blinker's helpers, isolation, leaks, and the
commit (events are published once written, in id order, a batch per hub loop iteration)."""
from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from api import close_app, create_app
from conftest import MakeLog
from supervisor import events
from supervisor.config import Config
from supervisor.eventlog import EventLog
from supervisor.events import Event
from supervisor.registry import Registry


class Recorder:
    """A receiver that keeps what it was sent."""

    def __init__(self) -> None:
        self.got: list[tuple[object, Event]] = []

    def __call__(self, sender: object, event: Event) -> None:
        self.got.append((sender, event))

    @property
    def ids(self) -> list[int]:
        return [event.id for _, event in self.got]

    @property
    def envelopes(self) -> list[tuple[object, str]]:
        """(sender, envelope) of each event: a backend may publish an equal event, not the same
        object (Redis: what the node's tailer read back)."""
        return [(sender, event.json) for sender, event in self.got]


def test_subscribers_get_events_with_the_log_as_sender(make_log: MakeLog) -> None:
    """A subscriber is called with the log as sender and the stored event, until it unsubscribes."""
    log = make_log()
    seen = Recorder()
    with log.subscribe(seen) as subscription:
        first = log.append("a", events.LOG, {"line": "x"})
        log.flush()
        assert subscription.active
    log.append("a", events.LOG, {"line": "after"})
    log.flush()
    assert seen.envelopes == [(log, first.json)] and not subscription.active
    assert log.receiver_count() == 0


def test_types_select_the_signals(make_log: MakeLog) -> None:
    """``types=`` limits a subscription to those event types."""
    log = make_log()
    states = Recorder()
    with log.subscribe(states, types=[events.STATE]):
        log.append("a", events.LOG, {"line": "x"})
        state = log.append("a", events.STATE, {"state": "running"})
        log.flush()
    assert states.ids == [state.id]


def test_closing_twice_is_harmless_and_each_subscription_is_its_own(make_log: MakeLog) -> None:
    """Two subscriptions of the same receiver are two; closing one leaves the other."""
    log = make_log()
    seen = Recorder()
    one, two = log.subscribe(seen), log.subscribe(seen)
    log.append("a", events.LOG, {})
    log.flush()
    one.close()
    one.close()
    log.append("a", events.LOG, {})
    log.flush()
    two.close()
    assert seen.ids == [1, 1, 2] and log.receiver_count() == 0


def test_a_raising_subscriber_is_logged_and_others_still_run(make_log: MakeLog, caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber that raises does not reach the publisher, nor stop the other subscribers."""
    log = make_log()

    def broken(sender: object, event: Event) -> None:
        raise RuntimeError("boom")

    seen = Recorder()
    with log.subscribe(broken), log.subscribe(seen):
        event = log.append("a", events.LOG, {"line": "x"})
        log.flush()
    assert seen.ids == [event.id]
    assert "boom" in caplog.text and "raised" in caplog.text


def test_blinker_muted_silences_the_signal(make_log: MakeLog) -> None:
    """Publishing goes through Signal.send, so blinker's muted() holds every receiver back."""
    log = make_log()
    seen = Recorder()
    with log.subscribe(seen):
        with log.signal(events.LOG).muted():
            log.append("a", events.LOG, {"line": "quiet"})
            log.flush()
        loud = log.append("a", events.LOG, {"line": "loud"})
        log.flush()
    assert seen.ids == [loud.id]


def test_blinker_connected_to_sees_each_event(make_log: MakeLog) -> None:
    """A receiver connected to the signal directly (blinker's test helper) sees each event."""
    log = make_log()
    seen = Recorder()
    with log.signal(events.LOG).connected_to(seen, sender=log):
        event = log.append("a", events.LOG, {})
        log.flush()
    assert seen.envelopes == [(log, event.json)]


def test_blinker_connected_to_gets_blinkers_contract() -> None:
    """A receiver connected to the signal directly gets blinker's contract, not the bus's
    guard: its exception reaches the publisher. Embedded only: there ``flush()`` is the
    publisher; with Redis the node's tailer greenlet publishes, and logs it."""
    log = EventLog(None)

    def broken(sender: object, event: Event) -> None:
        raise RuntimeError("direct")

    with log.signal(events.LOG).connected_to(broken), pytest.raises(RuntimeError, match="direct"):
        log.append("a", events.LOG, {})
        log.flush()  # the commit publishes: an explicit flush is the publisher


def test_two_logs_do_not_hear_each_other(make_log: MakeLog) -> None:
    """Each log owns its signals: a subscriber of one never sees the other's events (with
    Redis: two clusters, under two key prefixes of one Redis)."""
    first, second = make_log(cluster="one"), make_log(cluster="two")
    heard_first, heard_second = Recorder(), Recorder()
    with first.subscribe(heard_first), second.subscribe(heard_second):
        first.append("a", events.LOG, {"line": "one"})
        first.flush()
        second.flush()
    assert len(heard_first.got) == 1 and heard_second.got == []


def test_a_caught_up_read_is_empty_and_a_removed_agent_is_forgotten(make_log: MakeLog, tmp_path: Path) -> None:
    """read_after past the newest id is empty; remove() forgets the agent's history (the
    embedded backend deletes its files)."""
    log = make_log(tmp_path)
    log.append("gone", events.LOG, {"line": "x"})
    log.append("kept", events.LOG, {"line": "y"})
    log.flush()
    assert log.read_after(log.last_id(), "gone").events == []
    assert [e.data["line"] for e in log.last_events("gone", 5)] == ["x"]
    embedded = isinstance(log, EventLog)
    if embedded:
        assert list((tmp_path / "agents" / "gone").glob("events.*.jsonl"))
    log.remove("gone")
    if embedded:
        assert not (tmp_path / "agents" / "gone").exists()
    assert log.last_id("gone") == 0 and log.last_events("gone", 5) == []
    assert log.read_after(0, "gone").events == []
    assert [e.data["line"] for e in log.last_events("kept", 5)] == ["y"]


# -- apps ------------------------------------------------------------------------------------


def _config(tmp_path: Path) -> Config:
    from supervisor.config import load_config

    return load_config(environ={"HOME": str(tmp_path)}, data_dir=str(tmp_path / "data"))


def test_fifty_apps_built_and_closed_leave_no_receiver(tmp_path: Path) -> None:
    """Build and close 50 apps on one registry: its log's receiver count is back where it was,
    and no stream manager outlives its app (blinker's leak test, applied to the app)."""
    registry = Registry(_config(tmp_path), persist=False)
    before = registry.eventlog.receiver_count()  # type: ignore[attr-defined]
    managers: list[weakref.ref[Any]] = []
    for _ in range(50):
        app = create_app(registry.config, registry)
        managers.append(weakref.ref(app.extensions["agent_supervisor"].streams))
        assert registry.eventlog.receiver_count() == before + len(events.EVENT_TYPES)  # type: ignore[attr-defined]
        close_app(app)
        close_app(app)  # twice is harmless
        del app
    assert registry.eventlog.receiver_count() == before  # type: ignore[attr-defined]
    gc.collect()
    assert [ref for ref in managers if ref() is not None] == []
    registry.shutdown()


def test_two_apps_in_one_process_do_not_see_each_others_events(tmp_path: Path) -> None:
    """Two apps, each with its own registry: an event of one reaches only its own streams."""
    first = create_app(_config(tmp_path / "one"))
    second = create_app(_config(tmp_path / "two"))
    try:
        one, two = (app.extensions["agent_supervisor"] for app in (first, second))
        heard = Recorder()
        with two.registry.eventlog.subscribe(heard):
            event = one.registry.eventlog.append("a", events.LOG, {"line": "only for one"})
            one.registry.eventlog.flush()
        assert heard.got == []
        assert one.streams._received == event.id and two.streams._received == 0
    finally:
        close_app(first)
        close_app(second)
