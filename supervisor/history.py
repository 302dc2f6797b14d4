"""One agent's history: recent events in memory, every retained event on disk in JSON Lines.

Reading "everything after id N" is the one query consumers need (SSE resume, the REST events
endpoint, catching up after a restart). It is answered by a :class:`HistoryCursor` in bounded
steps, from memory when the memory reaches back far enough and from the files otherwise (a
sparse index of file offsets: a read never scans more than
:data:`~supervisor.segments.INDEX_EVERY` lines it does not return).

On disk the history is a series of segment files (:mod:`supervisor.segments`) and a manifest
(:mod:`supervisor.manifest`). With ``max_events`` set, the oldest segment is deleted once the
others hold that many: disk use stays bounded without rewriting a file (log rotation in
supervisord, retention in Kafka or Redis Streams).

**Exact counts of what is lost.** The agent's events are numbered 1, 2, 3, ... (its sequence;
not in the envelope, where ids already order them): line *n* of a segment is number
``first_seq + n``, and the manifest keeps each segment's first number and line count. A segment
found shorter than recorded, missing, or with lines that cannot be read is therefore an exact
number of missing events, kept as a *hole* ``(first id, last id, count)`` with those deleted by
retention. ``missed_after(id)`` adds up the holes after an id; a reader whose id falls inside a
hole (it saw events that were later lost) gets the part after its id in proportion to ids,
the one estimate, since the ids in a hole are not all this agent's and are not kept.

**Storage faults.** :meth:`AgentHistory.write` never raises: when the disk is full, fails or the
file was removed, the events stay in memory (which is bounded as always), the failure goes to
the :class:`~supervisor.health.StorageHealth`, and writing is retried at most every
:data:`RETRY_S`. Once it works, what is still in memory is written, in order; what fell out of
memory meanwhile is a hole (and counted as lost). A segment that was removed underneath is
noticed within :data:`REMOVED_CHECK_S`: its events still in memory are written to a new one.
A history is never appended to where it may be damaged: after a failure, a torn write, or a
damaged last segment found at start, the next line goes into a new segment.

Not safe to share between threads; in the server everything runs on one gevent hub.
"""
from __future__ import annotations

import bisect
import errno
import itertools
import logging
import time
from collections import deque
from pathlib import Path

from . import files, manifest
from .events import Event
from .health import StorageHealth
from .manifest import Entry, Hole, ManifestError
from .segments import READ_CHUNK, Segment, parse_line

log = logging.getLogger(__name__)

SEGMENT_EVENTS = 10_000
#: A history that cannot be written tries again at most this often (seconds).
RETRY_S = 0.5
#: How often the open segment is checked for having been removed underneath (seconds).
REMOVED_CHECK_S = 1.0
#: Holes kept before neighbours are merged (their counts stay exact, positions inside blur).
MAX_HOLES = 4096


class AgentHistory:
    """The events of one agent (or of the supervisor's own channel), oldest first.

    ``directory`` None keeps history in memory only: older events are then forgotten as new
    ones come. With a directory, ``max_events`` (None: no limit) bounds what is kept on disk.
    ``health`` hears of write failures (as the owner ``name``); ``durable`` fsyncs the manifest.

    Writing is the event log's two steps per commit: :meth:`write` the batch to the file, then
    :meth:`append` it to memory; readers see events up to :attr:`visible_id`, which the event
    log moves once the batch is committed (after its fsync, with ``durability = "fsync"``).
    """

    def __init__(
        self,
        name: str,
        directory: Path | None,
        memory_size: int,
        max_events: int | None = None,
        segment_events: int = SEGMENT_EVENTS,
        memory_bytes: int = 8 << 20,
        *,
        health: StorageHealth | None = None,
        durable: bool = False,
    ) -> None:
        self.name = name
        self.directory = directory
        self.max_events = max_events
        self.segment_events = max(1, min(segment_events, max_events or segment_events))
        self.health = health
        self.durable = durable
        # The newest events, at most memory_size of them and about memory_bytes of JSON: a few
        # agents printing huge lines must not use up the server's memory.
        self.memory_size = max(1, memory_size)
        self.memory_bytes = memory_bytes
        self._memory: deque[Event] = deque()
        self._memory_used = 0
        self._segments: list[Segment] = []
        self._fd: int | None = None
        self._reopen = False  # the last segment may be appended to (it was checked or written whole)
        self._seq = 0  # the agent's number of its newest event
        self._last_id = 0
        self._written_id = 0  # newest id in a file
        self._holes: list[Hole] = []
        self._lost: list[int] | None = None  # [first id, last id, count] fallen out of memory unwritten
        self._failing = False
        self._writing = False  # a write is under way (it may wait on an fsync in the thread pool)
        self._backlog = False  # memory holds events newer than the files that must be written first
        self._retry_at = 0.0
        self._check_at = 0.0
        self._warned: set[str] = set()
        #: Newest id readers may see: moved by the event log when a batch is committed.
        self.visible_id = 0
        #: Newest id this history ever knew of, lost ones included (the id reservation's floor).
        self.highest_id = 0
        if directory is not None:
            self._load(directory)
        self.visible_id = self._last_id
        self.highest_id = max([self._last_id, *(h[1] for h in self._holes)])

    # -- writing ---------------------------------------------------------------------------

    def write(self, batch: list[Event], now: float, in_thread: bool = False) -> int | None:
        """Write ``batch`` (ids greater than any before) to the open segment, after any events
        still waiting in memory; returns the descriptor written to (for an fsync), or None when
        nothing was written. Never raises: failures go to ``health``. ``in_thread`` lets a
        manifest's fsync wait in the thread pool: only the event log's one committing greenlet
        may ask that (a write that yields must not meet another one)."""
        if self.directory is None:
            return None
        if self._failing and now < self._retry_at:
            return None
        if not self._failing and self._fd is not None and now >= self._check_at:
            self._check_at = now + REMOVED_CHECK_S
            self._check_removed()
        pending = self._unwritten() + batch if self._backlog else batch
        first_seq = self._seq + len(batch) - len(pending) + 1
        self._writing = True
        try:
            fd = self._write_events(pending, first_seq, in_thread)
        except OSError as exc:
            self._failing = self._backlog = True
            self._retry_at = now + RETRY_S
            self._report(exc, "history")
            return None
        finally:
            self._writing = False
        self._backlog = False
        if self._failing:
            self._failing = False
            if self.health is not None:
                self.health.recovered(self.name, "history")
        return fd

    def append(self, batch: list[Event]) -> None:
        """Keep ``batch`` in memory (after :meth:`write`). What memory must let go of and was
        never written is lost, and counted."""
        memory = self._memory
        used = self._memory_used
        for event in batch:
            memory.append(event)
            used += len(event.json)
        self._seq += len(batch)
        self._last_id = batch[-1].id
        written = self._written_id
        while len(memory) > 1 and (len(memory) > self.memory_size or used > self.memory_bytes):
            gone = memory.popleft()
            used -= len(gone.json)
            if gone.id > written:
                self._lose(gone.id)
        self._memory_used = used

    def _lose(self, event_id: int) -> None:
        if self.directory is None:  # memory only: forgotten, one growing range
            if self._holes and self._holes[-1][1] < event_id:
                first, _, count = self._holes[-1]
                self._holes[-1] = (first, event_id, count + 1)
            else:
                self._holes.append((event_id, event_id, 1))
            return
        lost = self._lost
        if lost is None:
            self._lost = [event_id, event_id, 1]
        else:
            lost[1] = event_id
            lost[2] += 1
        if self.health is not None:
            self.health.events_lost += 1

    def _unwritten(self) -> list[Event]:
        """Events in memory newer than the files, oldest first."""
        written = self._written_id
        newer = list(itertools.takewhile(lambda e: e.id > written, reversed(self._memory)))
        newer.reverse()
        return newer

    @property
    def unwritten(self) -> int:
        """Events waiting in memory to be written (0 unless a write failed)."""
        return len(self._unwritten()) if self._backlog else 0

    def _write_events(self, pending: list[Event], first_seq: int, in_thread: bool) -> int | None:
        fd = None
        while pending:
            segment = self._writable_segment(first_seq, pending[0].id, in_thread)
            fd = self._fd
            assert fd is not None
            room = self.segment_events - segment.count
            chunk, pending = pending[:room], pending[room:]
            lines = [event.json.encode() + b"\n" for event in chunk]
            try:
                files.append(fd, b"".join(lines))
            except OSError:
                self._cut_back(segment)
                raise
            for event, line in zip(chunk, lines):
                segment.add(event.id, len(line))
            self._written_id = chunk[-1].id
            first_seq += len(chunk)
        return fd

    def _cut_back(self, segment: Segment) -> None:
        """A write failed partway: cut the file back to its last whole line, or, if even that
        fails, write the next lines to a new segment (the torn one is left as it is)."""
        fd = self._fd
        if fd is None:
            return
        try:
            files.truncate(fd, segment.size)
        except OSError:
            self._close_fd()
            self._reopen = False

    def _writable_segment(self, first_seq: int, first_id: int, in_thread: bool) -> Segment:
        """The segment the event numbered ``first_seq`` goes into: the open one if it has room
        and nothing was lost since its last line, else a new one (recorded in the manifest
        first). Raises ``OSError``."""
        segment = self._segments[-1] if self._segments else None
        if (segment is not None and segment.count < self.segment_events and segment.end_seq == first_seq
                and (self._fd is not None or self._reopen)):
            if self._fd is None:
                self._fd = files.open_append(segment.path)
            return segment
        assert self.directory is not None
        self._close_fd()
        new = Segment(self.directory, segment.number + 1 if segment else 1, first_seq)
        new.first_id = first_id
        segments = [*self._segments, new]
        holes = list(self._holes)
        if self._lost is not None:
            holes.append((self._lost[0], self._lost[1], self._lost[2]))
        deleted = self._retention(segments, holes)
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest.save(self.directory, self._entries(segments), self._bounded(holes), self.durable, in_thread)
        fd = files.open_append(new.path)
        # Recorded: from here on the state is the new one.
        self._fd = fd
        self._reopen = True
        self._segments = segments
        self._holes = holes
        self._lost = None
        self._check_at = 0.0
        for old in deleted:
            old.path.unlink(missing_ok=True)
        return new

    def _retention(self, segments: list[Segment], holes: list[Hole]) -> list[Segment]:
        """Take the oldest segments out while the others hold ``max_events`` events; their
        events become holes. Returns the segments whose files are to be deleted."""
        deleted: list[Segment] = []
        if not self.max_events:
            return deleted
        retained = sum(s.events for s in segments)
        while len(segments) > 1 and retained - segments[0].events >= self.max_events:
            oldest = segments.pop(0)
            retained -= oldest.events
            if oldest.events:
                holes.append((oldest.first_id, oldest.last_id, oldest.events))
            deleted.append(oldest)
        holes.sort()
        return deleted

    @staticmethod
    def _entries(segments: list[Segment]) -> list[Entry]:
        return [Entry(s.number, s.first_seq, s.count, s.first_id, s.last_id) for s in segments]

    @staticmethod
    def _bounded(holes: list[Hole]) -> list[Hole]:
        while len(holes) > MAX_HOLES:  # bound the bookkeeping: merge the two oldest
            (a, _, n1), (_, b, n2) = holes[0], holes[1]
            holes[0:2] = [(a, b, n1 + n2)]
        return holes

    def _check_removed(self) -> None:
        """The open segment was deleted underneath (its link count is 0): what is in it is
        gone, except the events memory still has, which are written again to a new one."""
        fd = self._fd
        if fd is None or not self._segments:
            return
        try:
            if not files.unlinked(fd):
                return
        except OSError:
            return
        segment = self._segments.pop()
        self._close_fd()
        self._reopen = False
        kept = [e for e in self._memory if e.id >= segment.first_id]
        lost = segment.events - len(kept)
        if lost > 0:
            last = kept[0].id - 1 if kept else segment.last_id
            self._holes.append((segment.first_id, last, lost))
            self._holes.sort()
            if self.health is not None:
                self.health.events_lost += lost
        # The kept events are written again, numbered as before: the next write starts a new
        # segment at the first of them (see write()), after a hole for the lost ones.
        self._written_id = self._segments[-1].last_id if self._segments else 0
        self._backlog = self._failing = True  # the episode ends with the next write that works
        self._retry_at = 0.0
        self._report(FileNotFoundError(errno.ENOENT, "removed while it was being written", str(segment.path)),
                     "history", warn=f"{segment.path} was removed while in use: {lost} of its events are lost,"
                                     f" the {len(kept)} still in memory are written again")

    def _report(self, exc: OSError, kind: str, warn: str | None = None) -> None:
        if warn is not None:
            log.warning("%s", warn)
        path = exc.filename or (self._segments[-1].path if self._segments else self.directory) or ""
        if self.health is not None:
            self.health.failed(self.name, kind, path, exc, self._retry if kind == "history" else self._save_manifest)
        elif self.directory is not None:
            log.warning("history %s: cannot write %s: %s", self.name, path, files.describe(exc))

    def _retry(self) -> None:
        """Write what waits in memory without waiting for a new event (the agent may be done).
        Runs in the health's retry greenlet: it never yields (fsyncs inline), so it cannot meet
        the event log's commit halfway (and leaves alone a history that commit is writing)."""
        if self._writing:
            return
        self._retry_at = 0.0
        fd = self.write([], time.monotonic())
        if fd is not None and self.durable:
            try:
                files.fsync(fd)
            except OSError as exc:
                self.sync_failed(exc)

    def sync_failed(self, exc: OSError) -> None:
        """An fsync of the open segment failed: the data may not reach the disk."""
        self._report(exc, "history")

    def synced(self) -> None:
        if self.health is not None and self.health.failing(self.name):
            self.health.recovered(self.name, "history")

    @property
    def fd(self) -> int | None:
        return self._fd

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                files.close(fd)
            except OSError as exc:
                self._report(exc, "history")

    def close(self) -> None:
        """Close the file and record the segments' counts in the manifest; a later
        :meth:`write` reopens it. Called when an agent completes, so that agents that are done
        hold no file descriptor, and at shutdown."""
        had_file = self._fd is not None
        self._close_fd()
        if had_file and not self._failing:
            self._save_manifest()

    def _save_manifest(self) -> None:
        if self.directory is None:
            return
        try:
            manifest.save(self.directory, self._entries(self._segments), self._bounded(list(self._holes)),
                          self.durable)
        except OSError as exc:
            self._report(exc, "manifest")
        else:
            if self.health is not None and self.health.failing(self.name):
                self.health.recovered(self.name, "manifest")

    def destroy(self) -> None:
        """Close and delete every file of this history; its folder too if nothing else is in it."""
        self._close_fd()
        if self.directory is None:
            return
        for segment in self._segments:
            segment.path.unlink(missing_ok=True)
        for name in (manifest.MANIFEST_FILE, manifest.LEGACY_FORGOTTEN_FILE):
            try:
                (self.directory / name).unlink()
            except OSError:
                pass
        self._segments = []
        if self.health is not None:
            self.health.forget(self.name)
        try:
            self.directory.rmdir()
        except OSError:
            pass  # not empty: the agent's other files are not the history's to delete

    # -- reading ---------------------------------------------------------------------------

    @property
    def last_id(self) -> int:
        """Id of the newest event readers may see, 0 when there is none."""
        return self.visible_id

    @property
    def first_id(self) -> int | None:
        """Id of the oldest event still retained, None when there is none."""
        for segment in self._segments:
            if segment.events:
                return segment.first_id
        return self._memory[0].id if self._memory else None

    def _retained(self) -> int:
        if self.directory is None:
            return len(self._memory)
        return sum(s.events for s in self._segments) + (len(self._unwritten()) if self._backlog else 0)

    def __len__(self) -> int:
        return self._retained()

    @property
    def holes(self) -> list[Hole]:
        """The known losses, oldest first (those still being counted included)."""
        if self._lost is None:
            return list(self._holes)
        return sorted([*self._holes, (self._lost[0], self._lost[1], self._lost[2])])

    def missed_after(self, after_id: int) -> int:
        """How many events newer than ``after_id`` are known to be gone."""
        missed = 0
        for first, last, count in self.holes:
            if first > after_id:
                missed += count
            elif last > after_id:
                # Inside a hole: its ids are not all this agent's; assume they spread evenly.
                missed += round(count * (last - after_id) / max(1, last - first + 1))
        return missed

    def cursor(self, after_id: int) -> HistoryCursor:
        return HistoryCursor(self, after_id)

    def read_after(self, after_id: int, limit: int | None = None) -> list[Event]:
        """Visible events with ``id > after_id``, oldest first, at most ``limit`` of them (in
        one go: for tests and small reads; replays use a :meth:`cursor`)."""
        cursor = self.cursor(after_id)
        result: list[Event] = []
        while limit is None or len(result) < limit:
            step = cursor.take(1000 if limit is None else min(1000, limit - len(result)))
            if not step:
                break
            result.extend(step)
        return result

    def last(self, n: int) -> list[Event]:
        """The newest ``n`` events, oldest first."""
        if n <= 0:
            return []
        memory = self._memory
        if n <= len(memory) or self.directory is None or len(memory) >= self._retained():
            return list(memory)[-n:]
        needed, start = n - len(memory), len(self._segments)
        while start > 0 and needed > 0:
            start -= 1
            needed -= self._segments[start].events
        after = self._segments[start].first_id - 1 if start < len(self._segments) else 0
        return self.read_after(after)[-n:]

    def _warn_once(self, path: Path, message: str) -> None:
        if str(path) not in self._warned:
            self._warned.add(str(path))
            log.warning("%s: %s", path, message)

    # -- loading ---------------------------------------------------------------------------

    def _load(self, directory: Path) -> None:
        """Rebuild segments, counters and holes from the files and the manifest. Damage is
        reported (one warning per damaged file), counted as holes and recorded; whatever can
        be read is kept. Raises ``OSError`` only when the folder itself cannot be read."""
        try:
            listing = list(directory.iterdir())
        except FileNotFoundError:
            return  # a new agent: its folder is made with its first segment
        said = False  # the manifest's own damage was reported already
        try:
            recorded = manifest.load(directory)
            rewrite = recorded.legacy and bool(recorded.holes)
        except ManifestError as exc:
            log.warning("%s; its segments are numbered again from the files (losses recorded there are"
                        " forgotten)", exc)
            recorded, rewrite = manifest.Manifest(legacy=True), True
            said = True
        found: dict[int, Path] = {}
        for path in listing:
            if not (path.name.startswith("events.") and path.name.endswith(".jsonl")):
                continue
            try:
                number = int(path.name[len("events."):-len(".jsonl")])
            except ValueError:
                continue
            if not path.is_file():
                log.warning("%s is not a file; it is skipped", path)
                continue
            found[number] = path
        holes = list(recorded.holes)
        next_seq = 1
        segments: list[Segment] = []
        numbers = sorted(set(found) | set(recorded.entries))
        last_clean = False
        for number in numbers:
            entry = recorded.entries.get(number)
            first_seq = entry.first_seq if entry is not None else next_seq
            segment = Segment(directory, number, first_seq)
            # At least this many lines were written (the count at the manifest's last write).
            expected = entry.count if entry is not None else 0
            readable = number in found
            damage = None
            if readable:
                try:
                    damage = segment.scan()
                except OSError as exc:
                    log.warning("%s cannot be read (%s); it is skipped", segment.path, files.describe(exc))
                    readable = False
                    segment = Segment(directory, number, first_seq)
            if not readable:
                if entry is not None and expected:
                    log.warning("%s is missing: %d events of %s are lost", segment.path, expected, self.name)
                    holes.append((entry.first_id, entry.last_id or entry.first_id, expected))
                    rewrite = True
                elif entry is not None and number == numbers[-1]:
                    log.warning("%s is missing; how many events it held is unknown (the server did not stop"
                                " cleanly)", segment.path)
                next_seq = first_seq + expected
                last_clean = False
                continue
            assert damage is not None
            problems = []
            for before, count, after in damage.runs:
                upper = after - 1 if after else max(before + count, entry.last_id if entry is not None else 0)
                if (before + 1, upper, count) in recorded.holes:
                    continue  # found at an earlier start, and counted then
                holes.append((before + 1, upper, count))
                problems.append(f"{count} unreadable line{'s' if count > 1 else ''} after id {before}")
            if segment.count < expected:
                missing = expected - segment.count
                upper = entry.last_id if entry is not None and entry.last_id > segment.last_id else segment.last_id + missing
                holes.append((segment.last_id + 1, upper, missing))
                problems.append(f"cut short: {missing} events missing at its end")
            if problems:
                log.warning("%s is damaged (%s); the rest of it is served", segment.path, "; ".join(problems))
                rewrite = True
            last_clean = not damage and segment.count >= expected
            next_seq = first_seq + max(segment.count, expected)
            if segment.count:
                segments.append(segment)
        self._segments = segments
        self._seq = next_seq - 1
        self._last_id = max((s.last_id for s in segments), default=0)
        self._written_id = self._last_id
        self._holes = sorted(holes)
        self._reopen = last_clean and bool(segments) and numbers[-1] == segments[-1].number
        if rewrite:
            try:
                manifest.save(directory, self._entries(segments), self._bounded(list(self._holes)), self.durable)
            except OSError as exc:
                if not said:
                    log.warning("%s: cannot record what was found (%s)", directory / manifest.MANIFEST_FILE,
                                files.describe(exc))
        # The memory starts empty: reads reach back to the files until new events fill it, so a
        # server with many past agents does not hold all their recent events at startup.


class HistoryCursor:
    """Where a reader of one history is: the id it has, and (while reading files) the segment
    and byte offset after it. Each :meth:`take` reads a bounded amount: at most ``limit``
    events and about :data:`~supervisor.segments.READ_CHUNK` bytes of file."""

    __slots__ = ("_offset", "_segment", "after", "history")

    def __init__(self, history: AgentHistory, after_id: int) -> None:
        self.history = history
        self.after = after_id
        self._segment: Segment | None = None
        self._offset = 0

    def take(self, limit: int, max_bytes: int = READ_CHUNK) -> list[Event]:
        """The next visible events, oldest first; empty when the reader has everything."""
        history = self.history
        until = history.visible_id
        after = self.after
        if after >= until or limit <= 0:
            return []
        memory = history._memory
        segments = history._segments
        if memory and after >= memory[0].id - 1:
            events = self._from_memory(memory, after, until, limit)
        elif segments and segments[-1].last_id > after:
            events = self._from_files(segments, after, until, limit, max_bytes)
            if not events and self._segment is None and memory:  # the files are done: memory has the rest
                events = self._from_memory(memory, after, until, limit)
        else:
            events = self._from_memory(memory, after, until, limit)
        if events:
            self.after = events[-1].id
        return events

    @staticmethod
    def _from_memory(memory: deque[Event], after: int, until: int, limit: int) -> list[Event]:
        lo, hi = 0, len(memory)
        while lo < hi:
            mid = (lo + hi) // 2
            if memory[mid].id <= after:
                lo = mid + 1
            else:
                hi = mid
        events = []
        for event in itertools.islice(memory, lo, lo + limit):
            if event.id > until:
                break
            events.append(event)
        return events

    def _from_files(self, segments: list[Segment], after: int, until: int, limit: int,
                    max_bytes: int) -> list[Event]:
        history = self.history
        agent = None if history.name.startswith("@") else history.name
        segment = self._segment
        if segment is None or segment not in segments:
            i = bisect.bisect_right([s.last_id for s in segments], after)
            if i >= len(segments):
                return []
            segment = segments[i]
            self._offset = segment.start_offset(after)
        events: list[Event] = []
        budget = max_bytes
        while True:
            try:
                lines, end = segment.read(self._offset, min(max(budget, READ_CHUNK >> 4), READ_CHUNK))
            except OSError as exc:
                history._warn_once(segment.path, f"cannot be read ({files.describe(exc)}); its events are skipped")
                lines, end = [], self._offset
                segment_done = True
            else:
                segment_done = not lines
            offset = self._offset
            for line in lines:
                offset += len(line) + 1
                try:
                    event = parse_line(line, agent)
                except (ValueError, UnicodeDecodeError):
                    history._warn_once(segment.path, "skipping unreadable history lines")
                    continue
                if event.id <= after:
                    continue
                if event.id > until:
                    self._segment, self._offset = segment, offset - len(line) - 1
                    return events
                events.append(event)
                after = event.id
                if len(events) >= limit:
                    self._segment, self._offset = segment, offset
                    return events
            budget -= end - self._offset
            self._offset = end
            if segment_done or end >= segment.size:
                i = segments.index(segment) + 1 if segment in segments else len(segments)
                if i >= len(segments):
                    self._segment = None
                    return events
                segment, self._offset = segments[i], 0
            self._segment = segment
            if budget <= 0 and events:  # without any, go on: what is skipped is bounded by the index
                return events
