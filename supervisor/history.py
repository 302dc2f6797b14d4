"""One agent's history: recent events in memory, every event in a JSON Lines file on disk.

Reading "everything after id N" is the one query consumers need (SSE resume, the REST events
endpoint, catching up after a restart). It is answered from memory when the memory reaches back
far enough and from the file otherwise, with a sparse index of file offsets so that a read never
scans more than :data:`INDEX_EVERY` lines it does not return.

Not safe to share between threads; in the server everything runs on one gevent hub. File writes
are buffered and made durable by :meth:`AgentHistory.flush`, which the event log calls after each
batch of output.
"""
from __future__ import annotations

import bisect
import io
import logging
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from .events import Event

log = logging.getLogger(__name__)

#: One index entry (event id -> byte offset in the file) every this many events.
INDEX_EVERY = 512

EVENTS_FILE = "events.jsonl"


def _fast_id(line: bytes) -> int:
    """The id of a history line without parsing the JSON: every envelope starts ``{"id":N,``."""
    if line.startswith(b'{"id":'):
        end = line.find(b",", 6)
        if end > 6:
            try:
                return int(line[6:end])
            except ValueError:
                pass
    return Event.from_json(line.decode("utf-8")).id


class AgentHistory:
    """The events of one agent (or of the supervisor's own channel), oldest first.

    ``directory`` None keeps history in memory only: older events are then forgotten, and
    :meth:`missed_after` says how many a reader has lost.
    """

    def __init__(self, name: str, directory: Path | None, memory_size: int) -> None:
        self.name = name
        self.directory = directory
        self._memory: deque[Event] = deque(maxlen=memory_size)
        self._count = 0  # events ever appended and still retained (memory or disk)
        self._first_id: int | None = None
        self._last_id = 0
        # Forgotten events (memory-only mode): run-length ranges of ids [start, end] and counts,
        # so a resuming client can be told exactly how many it missed.
        self._forgotten: list[tuple[int, int, int]] = []  # (first id, last id, count)
        self._forgotten_total = 0
        self._index_ids: list[int] = []
        self._index_offsets: list[int] = []
        self._file: io.BufferedWriter | None = None
        self._offset = 0
        self._dirty = False
        if directory is not None:
            self._load(directory / EVENTS_FILE)

    # -- writing ---------------------------------------------------------------------------

    def append(self, event: Event) -> None:
        """Keep ``event`` (whose id must be greater than every id before it)."""
        memory = self._memory
        if self.directory is None and len(memory) == memory.maxlen:
            self._forget(memory[0].id)
        memory.append(event)
        if self._first_id is None:
            self._first_id = event.id
        self._last_id = event.id
        if self.directory is not None:
            if self._file is None:
                self._file = open(self.directory / EVENTS_FILE, "ab")  # noqa: SIM115 - see close()
            if self._count % INDEX_EVERY == 0:
                self._index_ids.append(event.id)
                self._index_offsets.append(self._offset)
            data = event.json.encode("utf-8") + b"\n"
            self._file.write(data)
            self._offset += len(data)
            self._dirty = True
        self._count += 1

    def flush(self) -> None:
        """Push buffered lines to the file (page cache); cheap when nothing is pending."""
        if self._dirty and self._file is not None:
            self._file.flush()
            self._dirty = False

    def close(self) -> None:
        """Flush and close the file; a later :meth:`append` reopens it. Called when an agent
        completes, so that agents that are done hold no file descriptor."""
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def _forget(self, event_id: int) -> None:
        self._forgotten_total += 1
        if self._forgotten and self._forgotten[-1][1] < event_id:
            first, _, count = self._forgotten[-1]
            self._forgotten[-1] = (first, event_id, count + 1)
        else:
            self._forgotten.append((event_id, event_id, 1))
        # Bound the bookkeeping: merging old ranges only makes old counts approximate.
        if len(self._forgotten) > 4096:
            (a, _, n1), (_, b, n2) = self._forgotten[0], self._forgotten[1]
            self._forgotten[0:2] = [(a, b, n1 + n2)]
        self._count -= 1
        self._first_id = None  # recomputed lazily from memory

    # -- reading ---------------------------------------------------------------------------

    @property
    def last_id(self) -> int:
        """Id of the newest event, 0 when there is none."""
        return self._last_id

    @property
    def first_id(self) -> int | None:
        """Id of the oldest event still retained, None when there is none."""
        if self._first_id is None and self._memory:
            self._first_id = self._memory[0].id
        return self._first_id

    def __len__(self) -> int:
        return self._count

    def last(self, n: int) -> list[Event]:
        """The newest ``n`` events, oldest first."""
        if n <= 0:
            return []
        if n <= len(self._memory) or self._count == len(self._memory):
            return list(self._memory)[-n:]
        # Start from the index entry just before the n-th newest event, not the file's start.
        entry = max(0, (self._count - n) // INDEX_EVERY)
        after = self._index_ids[entry] - 1 if self._index_ids else 0
        return list(self._iter_file_after(after))[-n:]

    def missed_after(self, after_id: int) -> int:
        """How many events newer than ``after_id`` are no longer retained."""
        if not self._forgotten_total:
            return 0
        starts = [r[0] for r in self._forgotten]
        i = bisect.bisect_right(starts, after_id)
        missed = sum(count for _, _, count in self._forgotten[i:])
        if i and self._forgotten[i - 1][1] > after_id:
            first, last, count = self._forgotten[i - 1]
            # Inside a merged range: assume its ids were evenly spread.
            missed += round(count * (last - after_id) / max(1, last - first + 1))
        return missed

    def read_after(self, after_id: int, limit: int | None = None) -> list[Event]:
        """Retained events with ``id > after_id``, oldest first, at most ``limit`` of them."""
        if after_id >= self._last_id:
            return []
        memory = self._memory
        if memory and (after_id >= memory[0].id or self._count == len(memory)):
            # Everything wanted is in memory: find the start by bisection on ids.
            lo, hi = 0, len(memory)
            while lo < hi:
                mid = (lo + hi) // 2
                if memory[mid].id <= after_id:
                    lo = mid + 1
                else:
                    hi = mid
            stop = len(memory) if limit is None else min(len(memory), lo + limit)
            return [memory[i] for i in range(lo, stop)]
        result: list[Event] = []
        for event in self._iter_file_after(after_id):
            result.append(event)
            if limit is not None and len(result) >= limit:
                break
        return result

    def _iter_file_after(self, after_id: int) -> Iterator[Event]:
        if self.directory is None or not self._count:
            return
        self.flush()
        path = self.directory / EVENTS_FILE
        start = 0
        i = bisect.bisect_right(self._index_ids, after_id) - 1
        if i >= 0:
            start = self._index_offsets[i]
        with open(path, "rb") as f:
            f.seek(start)
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a torn last line (crash mid-write): not an event
                try:
                    if _fast_id(raw) <= after_id:
                        continue
                    yield Event.from_json(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    log.warning("%s: skipping an unreadable history line", path)

    # -- loading ---------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        """Open (creating if needed) the history file and rebuild counters, index and memory."""
        path.parent.mkdir(parents=True, exist_ok=True)
        offset = 0
        good_end = 0
        if path.exists():
            with open(path, "rb") as f:
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break
                    try:
                        event_id = _fast_id(raw)
                    except (ValueError, UnicodeDecodeError):
                        offset += len(raw)
                        good_end = offset
                        continue
                    if event_id <= self._last_id:  # out of order: a damaged file; skip the line
                        offset += len(raw)
                        good_end = offset
                        continue
                    if self._count % INDEX_EVERY == 0:
                        self._index_ids.append(event_id)
                        self._index_offsets.append(offset)
                    if self._first_id is None:
                        self._first_id = event_id
                    self._last_id = event_id
                    self._count += 1
                    offset += len(raw)
                    good_end = offset
            if good_end != path.stat().st_size:
                # Cut a torn last line so the next append starts on a line of its own.
                os.truncate(path, good_end)
        self._offset = good_end
        if self._count:
            self._memory.extend(self.last(self._memory.maxlen or 0))
