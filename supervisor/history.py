"""One agent's history: recent events in memory, every retained event on disk in JSON Lines.

Reading "everything after id N" is the one query consumers need (SSE resume, the REST events
endpoint, catching up after a restart). It is answered from memory when the memory reaches back
far enough and from the files otherwise, with a sparse index of file offsets so that a read never
scans more than :data:`INDEX_EVERY` lines it does not return.

On disk the history is a series of segment files (``events.000001.jsonl``, ...) of
``segment_events`` events each. With ``max_events`` set, the oldest segment is deleted once the
others hold that many: disk use stays bounded without ever rewriting a file (the way log
rotation works in supervisord, and retention in Kafka or Redis Streams). What was deleted is
remembered (``forgotten.json``: id ranges and counts), so a reader that asks for it is told how
many events it missed.

Not safe to share between threads; in the server everything runs on one gevent hub. File writes
are buffered and made durable by :meth:`AgentHistory.flush`, which the event log calls after each
batch of output.
"""
from __future__ import annotations

import bisect
import io
import json
import logging
import os
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from .events import Event

log = logging.getLogger(__name__)

#: One index entry (event id -> byte offset in its segment) every this many events.
INDEX_EVERY = 512
SEGMENT_EVENTS = 10_000
FORGOTTEN_FILE = "forgotten.json"
_SEGMENT_NAME = re.compile(r"events\.(\d{6,})\.jsonl")


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


class _Segment:
    """One history file: its id range, size and sparse offset index."""

    __slots__ = ("path", "number", "first_id", "last_id", "count", "size", "index_ids", "index_offsets")

    def __init__(self, directory: Path, number: int) -> None:
        self.number = number
        self.path = directory / f"events.{number:06d}.jsonl"
        self.first_id = 0
        self.last_id = 0
        self.count = 0
        self.size = 0
        self.index_ids: list[int] = []
        self.index_offsets: list[int] = []

    def add(self, event_id: int, length: int) -> None:
        if self.count % INDEX_EVERY == 0:
            self.index_ids.append(event_id)
            self.index_offsets.append(self.size)
        if not self.count:
            self.first_id = event_id
        self.last_id = event_id
        self.count += 1
        self.size += length

    def scan(self) -> None:
        """Rebuild the counters and index from the file; cut a torn last line."""
        good_end = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a crash mid-write: not an event
                try:
                    event_id = _fast_id(raw)
                except (ValueError, UnicodeDecodeError):
                    event_id = 0
                if event_id > self.last_id:
                    self.add(event_id, len(raw))
                else:  # unreadable or out of order: a damaged line, skipped but kept in place
                    self.size += len(raw)
                good_end = self.size
        if good_end != self.path.stat().st_size:
            os.truncate(self.path, good_end)

    def iter_after(self, after_id: int) -> Iterator[Event]:
        start = 0
        i = bisect.bisect_right(self.index_ids, after_id) - 1
        if i >= 0:
            start = self.index_offsets[i]
        with open(self.path, "rb") as f:
            f.seek(start)
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    if _fast_id(raw) <= after_id:
                        continue
                    yield Event.from_json(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    log.warning("%s: skipping an unreadable history line", self.path)


class AgentHistory:
    """The events of one agent (or of the supervisor's own channel), oldest first.

    ``directory`` None keeps history in memory only: older events are then forgotten as new
    ones come. With a directory, ``max_events`` (None: no limit) bounds what is kept on disk.
    """

    def __init__(
        self,
        name: str,
        directory: Path | None,
        memory_size: int,
        max_events: int | None = None,
        segment_events: int = SEGMENT_EVENTS,
        memory_bytes: int = 8 << 20,
    ) -> None:
        self.name = name
        self.directory = directory
        self.max_events = max_events
        self.segment_events = max(1, min(segment_events, max_events or segment_events))
        # The newest events, at most memory_size of them and about memory_bytes of JSON: a few
        # agents printing huge lines must not use up the server's memory.
        self.memory_size = max(1, memory_size)
        self.memory_bytes = memory_bytes
        self._memory: deque[Event] = deque()
        self._memory_used = 0
        self._segments: list[_Segment] = []
        self._file: io.BufferedWriter | None = None
        self._dirty = False
        self._last_id = 0
        # Forgotten events: (first id, last id, count) ranges, so a resuming reader can be
        # told how many it missed.
        self._forgotten: list[tuple[int, int, int]] = []
        if directory is not None:
            self._load(directory)

    # -- writing ---------------------------------------------------------------------------

    def append(self, event: Event) -> None:
        """Keep ``event`` (whose id must be greater than every id before it)."""
        memory = self._memory
        memory.append(event)
        self._memory_used += len(event.json)
        while len(memory) > 1 and (len(memory) > self.memory_size or self._memory_used > self.memory_bytes):
            gone = memory.popleft()
            self._memory_used -= len(gone.json)
            if self.directory is None:  # nowhere else to read it from: it is forgotten
                self._remember_forgotten(gone.id, gone.id, 1)
        self._last_id = event.id
        if self.directory is None:
            return
        segment = self._segments[-1] if self._segments else None
        if segment is None or segment.count >= self.segment_events:
            self._close_file()
            segment = _Segment(self.directory, segment.number + 1 if segment else 1)
            self._segments.append(segment)
            self._apply_retention()
        if self._file is None:
            self._file = open(segment.path, "ab")  # noqa: SIM115 - closed by close()
        data = event.json.encode("utf-8") + b"\n"
        self._file.write(data)
        segment.add(event.id, len(data))
        self._dirty = True

    def _apply_retention(self) -> None:
        """Delete the oldest segments while the others hold at least ``max_events`` events."""
        if not self.max_events:
            return
        changed = False
        while len(self._segments) > 1 and self._retained() - self._segments[0].count >= self.max_events:
            oldest = self._segments.pop(0)
            self._remember_forgotten(oldest.first_id, oldest.last_id, oldest.count)
            oldest.path.unlink(missing_ok=True)
            changed = True
        if changed and self.directory is not None:
            tmp = self.directory / (FORGOTTEN_FILE + ".tmp")
            tmp.write_text(json.dumps(self._forgotten))
            os.replace(tmp, self.directory / FORGOTTEN_FILE)

    def _remember_forgotten(self, first: int, last: int, count: int) -> None:
        if self._forgotten and self.directory is None and self._forgotten[-1][1] < first:
            start, _, total = self._forgotten[-1]
            self._forgotten[-1] = (start, last, total + count)  # memory mode: one growing range
        else:
            self._forgotten.append((first, last, count))
        if len(self._forgotten) > 4096:  # bound the bookkeeping; old counts become approximate
            (a, _, n1), (_, b, n2) = self._forgotten[0], self._forgotten[1]
            self._forgotten[0:2] = [(a, b, n1 + n2)]

    def flush(self) -> None:
        """Push buffered lines to the file (page cache); cheap when nothing is pending."""
        if self._dirty and self._file is not None:
            self._file.flush()
            self._dirty = False

    def _close_file(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Flush and close the file; a later :meth:`append` reopens it. Called when an agent
        completes, so that agents that are done hold no file descriptor."""
        self._close_file()

    def destroy(self) -> None:
        """Close and delete every file of this history; its folder too if nothing else is in it."""
        self._close_file()
        if self.directory is None:
            return
        for segment in self._segments:
            segment.path.unlink(missing_ok=True)
        (self.directory / FORGOTTEN_FILE).unlink(missing_ok=True)
        self._segments = []
        try:
            self.directory.rmdir()
        except OSError:
            pass  # not empty: the agent's other files are not the history's to delete

    # -- reading ---------------------------------------------------------------------------

    @property
    def last_id(self) -> int:
        """Id of the newest event, 0 when there is none."""
        return self._last_id

    @property
    def first_id(self) -> int | None:
        """Id of the oldest event still retained, None when there is none."""
        if self._segments:
            return self._segments[0].first_id or None
        return self._memory[0].id if self._memory else None

    def _retained(self) -> int:
        return sum(s.count for s in self._segments) if self.directory is not None else len(self._memory)

    def __len__(self) -> int:
        return self._retained()

    def last(self, n: int) -> list[Event]:
        """The newest ``n`` events, oldest first."""
        if n <= 0:
            return []
        if n <= len(self._memory) or self.directory is None or len(self._memory) == self._retained():
            return list(self._memory)[-n:]
        needed, start = n, len(self._segments)
        while start > 0 and needed > 0:
            start -= 1
            needed -= self._segments[start].count
        events: list[Event] = []
        for segment in self._segments[start:]:
            events.extend(segment.iter_after(0))
        return events[-n:]

    def missed_after(self, after_id: int) -> int:
        """How many events newer than ``after_id`` are no longer retained."""
        if not self._forgotten:
            return 0
        missed = 0
        for first, last, count in self._forgotten:
            if first > after_id:
                missed += count
            elif last > after_id:
                # Inside a range: its ids are not all this agent's; assume they spread evenly.
                missed += round(count * (last - after_id) / max(1, last - first + 1))
        return missed

    def read_after(self, after_id: int, limit: int | None = None) -> list[Event]:
        """Retained events with ``id > after_id``, oldest first, at most ``limit`` of them."""
        if after_id >= self._last_id:
            return []
        memory = self._memory
        if memory and (after_id >= memory[0].id or len(memory) == self._retained()):
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
        self.flush()
        result: list[Event] = []
        for segment in self._segments:
            if segment.last_id <= after_id:
                continue
            for event in segment.iter_after(after_id):
                result.append(event)
                if limit is not None and len(result) >= limit:
                    return result
        return result

    # -- loading ---------------------------------------------------------------------------

    def _load(self, directory: Path) -> None:
        """Find the segment files and rebuild counters, indexes and the memory."""
        directory.mkdir(parents=True, exist_ok=True)
        numbers = sorted(int(m.group(1)) for p in directory.iterdir() if (m := _SEGMENT_NAME.fullmatch(p.name)))
        for number in numbers:
            segment = _Segment(directory, number)
            segment.scan()
            if segment.count:
                if segment.first_id <= self._last_id:
                    log.warning("%s: ids go backwards; segment ignored", segment.path)
                    continue
                self._last_id = segment.last_id
            self._segments.append(segment)
        try:
            ranges = json.loads((directory / FORGOTTEN_FILE).read_text())
            self._forgotten = [(int(a), int(b), int(c)) for a, b, c in ranges]
        except FileNotFoundError:
            pass
        except (ValueError, TypeError) as exc:
            log.warning("%s: unreadable %s (%s); missed counts start from zero", directory, FORGOTTEN_FILE, exc)
        # The memory starts empty: reads reach back to the files until new events fill it, so a
        # server with many past agents does not hold all their recent events at startup.
