"""The id reservation: blocks reserved on disk before use, above everything on a restart."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from supervisor import files
from supervisor.eventlog import EventLog
from supervisor.health import StorageHealth
from supervisor.ids import BLOCK, IDS_FILE, SPARE_FILE, IdReservation

from support.faults import Faults, kind


def test_a_block_is_reserved_before_its_ids_are_used(tmp_path: Path) -> None:
    """The mark on disk is always at or above the ids covered; one write per block."""
    ids = IdReservation(tmp_path / IDS_FILE, floor=0)
    assert ids.start == 1
    assert ids.cover(1) and ids.reserved == 1 + BLOCK
    assert json.loads((tmp_path / IDS_FILE).read_text()) == {"reserved": 1 + BLOCK}
    before = (tmp_path / IDS_FILE).stat().st_mtime_ns
    assert ids.cover(BLOCK) and (tmp_path / IDS_FILE).stat().st_mtime_ns == before
    assert ids.cover(BLOCK + 2) and ids.reserved == 2 * BLOCK + 2
    assert (tmp_path / SPARE_FILE).stat().st_size == 4096


def test_a_restart_starts_above_the_mark_and_the_history(tmp_path: Path) -> None:
    """A new process starts above the reserved mark (a kill may have sent any id up to it),
    and above the history's newest id when the mark is missing or damaged (a block higher)."""
    IdReservation(tmp_path / IDS_FILE, floor=0).cover(7)
    assert IdReservation(tmp_path / IDS_FILE, floor=3).start == 7 + BLOCK + 1
    assert IdReservation(tmp_path / IDS_FILE, floor=50_000).start == 50_001
    (tmp_path / IDS_FILE).write_text('{"reserved": "many"}')
    assert IdReservation(tmp_path / IDS_FILE, floor=10).start == 10 + BLOCK + 1
    (tmp_path / IDS_FILE).unlink()
    assert IdReservation(tmp_path / IDS_FILE, floor=10).start == 11


def test_event_log_ids_jump_a_block_after_a_kill(tmp_path: Path) -> None:
    """Ids of one process are consecutive; the next process starts above the whole reserved
    block, whether or not the first closed cleanly."""
    first = EventLog(tmp_path)
    got = [first.append("a", "log", {}).id for _ in range(5)]
    first.flush()  # no close: as if killed now
    assert got == [1, 2, 3, 4, 5]
    second = EventLog(tmp_path)
    event = second.append("a", "log", {})
    second.flush()
    assert event.id == 5 + BLOCK + 1 and second.first_id == event.id  # the batch of 5 reserved up to 5 + BLOCK
    assert [e.id for e in second.read_after(0, "a").events] == [1, 2, 3, 4, 5, event.id]


def test_a_full_disk_spends_the_spare_and_then_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the mark cannot be written for lack of space, the spare file is deleted to make
    room; when even that fails, the failure goes to the storage health and ids go on."""
    health = StorageHealth()
    ids = IdReservation(tmp_path / IDS_FILE, floor=0, health=health)
    assert ids.cover(1)
    faults = Faults(errno.ENOSPC).install(monkeypatch)
    spare = tmp_path / SPARE_FILE
    writes = 0

    def first_write_only(call: object) -> bool:
        nonlocal writes
        if kind(call) != "ids":
            return False
        writes += 1
        return writes == 1

    faults.failing = first_write_only
    assert ids.cover(BLOCK + 5) and not spare.exists() and not health.degraded
    faults.failing = lambda call: kind(call) == "ids"
    assert not ids.cover(3 * BLOCK) and health.degraded
    assert "ENOSPC" in health.reasons()[0] and ids.reserved == 2 * BLOCK + 5
    faults.failing = lambda call: False
    assert ids.cover(3 * BLOCK) and not health.degraded and spare.exists()
    assert files.FULL >= {errno.ENOSPC}
