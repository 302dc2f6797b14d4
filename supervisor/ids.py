"""Event ids that are never used twice, whatever happens to the server.

Clients resume with a bare integer (``Last-Event-ID``), so an id a client has seen must never
name another event, across a crash of the server too. The counter lives in memory; on disk
(``<data dir>/ids.json``) lives its *high-water mark*: every id up to ``reserved`` may have
been handed out. The event log reserves a block of :data:`BLOCK` ids at a time, before any
event of the block is written or sent (:meth:`IdReservation.cover` is the first step of each
commit), so after a kill at any instant the next server starts above ``reserved``, above every
id that may have reached a client. One small atomic write (temporary file, rename; with
``durability = "fsync"`` also fsync of the file and the folder) per block of ids.

A restart therefore skips ahead: ids jump by up to one block (the unused rest of the last one).
The ids of one server process are consecutive; across restarts they are increasing but not
consecutive. A reader inside such a jump lost nothing: those ids were never given to an event
anyone saw (write-ahead: an event reaches a client only after it is in its history file).

A full disk must not stop the ids either: a 4 KiB spare file (``ids.spare``) is kept beside the
mark, and deleted to make room when the mark cannot be written for lack of space. If even that
fails, ids go on past the mark (the supervisor is degraded, and says so): a crash then may
reuse ids of events that were sent but not kept, which is what ``/healthz`` warns about.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from . import files
from .health import StorageHealth

log = logging.getLogger(__name__)

#: Ids reserved per write of the mark.
BLOCK = 10_000
IDS_FILE = "ids.json"
SPARE_FILE = "ids.spare"
SPARE_BYTES = 4096


class IdReservation:
    """The reserved high-water mark of one data directory (``path`` None: nothing on disk).

    ``floor`` is the newest id found in history: the mark starts at least there (an ids file
    that is missing or damaged is rebuilt from it, a block higher to be safe). :attr:`start` is
    the first id this process may give out.
    """

    def __init__(self, path: Path | None, floor: int, *, durable: bool = False,
                 health: StorageHealth | None = None, owner: str = "@supervisor") -> None:
        self.path = path
        self.durable = durable
        self.health = health
        self.owner = owner
        self._wanted = 0
        previous = self._read(floor) if path is not None else floor
        self.reserved = max(previous, floor)
        #: The first id of this process: above every id any earlier process may have used.
        self.start = self.reserved + 1

    def _read(self, floor: int) -> int:
        assert self.path is not None
        try:
            raw = json.loads(files.read(self.path))
            value = raw["reserved"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"reserved must be a non-negative integer, not {value!r}")
            return value
        except FileNotFoundError:
            return floor
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # The mark is gone: the ids in history are the best floor; a block more covers
            # what the last server may have sent beyond what it kept.
            log.warning("%s is damaged (%s); ids continue a block above the newest id in history",
                        self.path, exc)
            return floor + BLOCK

    def cover(self, last_id: int, in_thread: bool = False) -> bool:
        """Make sure ids up to ``last_id`` are reserved on disk (a write every :data:`BLOCK`
        ids). ``in_thread``: fsync in the thread pool, the calling greenlet waiting (only the
        event log's one committing greenlet does: nothing else writes the mark meanwhile).
        Returns False when the mark could not be written (reported to ``health``)."""
        if last_id <= self.reserved:
            return True
        self._wanted = last_id
        target = last_id + BLOCK
        if self.path is None:
            self.reserved = target
            return True
        try:
            self._write(target, in_thread)
        except OSError as exc:
            if exc.errno in files.FULL and self._spend_spare():
                try:
                    self._write(target, in_thread)
                except OSError as again:
                    exc = again
                else:
                    self._recovered(target)
                    return True
            if self.health is not None:
                self.health.failed(self.owner, "ids", self.path, exc, lambda: self.cover(self._wanted))
            return False
        self._recovered(target)
        self._keep_spare()
        return True

    def _recovered(self, target: int) -> None:
        self.reserved = target
        if self.health is not None:
            self.health.recovered(self.owner, "ids")

    def _write(self, value: int, in_thread: bool) -> None:
        assert self.path is not None
        data = json.dumps({"reserved": value}).encode() + b"\n"
        files.replace(self.path, data, durable=self.durable, in_thread=in_thread)

    def _spare(self) -> Path:
        assert self.path is not None
        return self.path.with_name(SPARE_FILE)

    def _keep_spare(self) -> None:
        """Keep the spare file, so that a full disk still has room for one more mark."""
        spare = self._spare()
        if spare.exists():
            return
        try:
            fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError:
            return
        try:
            files.append(fd, b"\0" * SPARE_BYTES)
        except OSError:
            os.close(fd)
            spare.unlink(missing_ok=True)  # a spare that holds no room is no spare
            return
        os.close(fd)

    def _spend_spare(self) -> bool:
        try:
            self._spare().unlink()
        except OSError:
            return False
        log.warning("%s: the disk is full; the spare file was deleted to write the id mark", self.path)
        return True
