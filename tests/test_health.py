"""Storage health: one warning and one notice per episode, retries until writing works."""
from __future__ import annotations

import errno
import logging

import pytest

from supervisor import health as health_module
from supervisor.health import StorageHealth

from support.waiting import gwait


def test_an_episode_is_said_once_and_ends_when_every_file_works(caplog: pytest.LogCaptureFixture) -> None:
    """Many failures of one owner's files are one episode: one warning, one notice; it ends
    when each failing file has been written again, and a flap right after stays silent."""
    notices: list[tuple[str, str]] = []
    health = StorageHealth(lambda owner, message: notices.append((owner, message)))
    full = OSError(errno.ENOSPC, "No space left on device")
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            health.failed("a", "history", "/d/a/events.000001.jsonl", full)
            health.failed("a", "output", "/d/a/output.log", full)
        health.failed("b", "record", "/d/b/agent.json", OSError(errno.EIO, "Input/output error"))
    assert [owner for owner, _ in notices] == ["a", "b"]
    assert len([r for r in caplog.records if "storage failed for a" in r.getMessage()]) == 1
    assert health.degraded and len(health.reasons()) == 2 and "ENOSPC" in health.reasons()[0]
    health.recovered("a", "history")
    assert health.failing("a")
    health.recovered("a", "output")
    assert not health.failing("a") and health.failing("b")
    health.failed("a", "output", "/d/a/output.log", full)  # a flap: the same trouble, already said
    assert len(notices) == 2 and health.failing("a") and health.episodes_total == 2
    status = health.status(events_unwritten=7)
    assert status["status"] == "degraded" and status["events_unwritten"] == 7
    assert {e["owner"] for e in status["failing"]} == {"a", "b"}


def test_retries_run_until_the_write_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure given with a retry has it called every RETRY_S until it reports success."""
    monkeypatch.setattr(health_module, "RETRY_S", 0.01)
    health = StorageHealth()
    calls = []

    def retry() -> None:
        calls.append(1)
        if len(calls) >= 3:
            health.recovered("a", "record")

    health.failed("a", "record", "/d/a/agent.json", OSError(errno.EIO, "Input/output error"), retry)
    gwait(lambda: not health.degraded, 5, "the retry to succeed")
    assert len(calls) == 3
    health.close()
