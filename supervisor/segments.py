"""One history segment file: the lines of some consecutive events of one agent, and reading them.

A segment is JSON Lines, one envelope per line, ids increasing. Line *n* of a segment is the
agent's event number ``first_seq + n`` (every agent numbers its events 1, 2, 3, ...; the
numbers are not in the envelope, the manifest keeps each segment's first one), so a line that
cannot be read is still counted as one event that is missing, and a cut or deleted segment is an
exact count (see :mod:`supervisor.history`).

Reading never parses more than it must: the id and type of a line are read from its first
bytes (every envelope starts ``{"id":N,"type":"T",``), the rest of the JSON only when someone
asks for an event's data. That is what lets a replay send 100,000 events a second from disk.
"""
from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .events import Event

log = logging.getLogger(__name__)

#: One index entry (event id -> byte offset in its segment) every this many events.
INDEX_EVERY = 512
#: Bytes read from a file at a time: a bound on the work between two yields of a replay.
READ_CHUNK = 256 << 10


def fast_id(line: bytes) -> int:
    """The id of a history line without parsing the JSON; raises ``ValueError`` when the line
    is not an envelope."""
    if line.startswith(b'{"id":'):
        end = line.find(b",", 6)
        if end > 6:
            try:
                return int(line[6:end])
            except ValueError:
                pass
    event = Event.from_json(line.decode("utf-8"))
    return event.id


def parse_line(line: bytes, agent_name: str | None) -> Event:
    """The event of a history line (without its newline). ``agent_name`` is the channel's agent
    when every event of the channel is that agent's; None parses it from the JSON. Raises
    ``ValueError`` (``UnicodeDecodeError`` is one) for a line that is not an envelope."""
    if agent_name is not None and line.startswith(b'{"id":'):
        comma = line.find(b",", 6)
        if comma > 6 and line.startswith(b'"type":"', comma + 1):
            start = comma + 9
            end = line.find(b'"', start)
            if end > start:
                try:
                    event_id = int(line[6:comma])
                except ValueError:
                    event_id = -1
                if event_id >= 0:
                    return Event.stored(event_id, line[start:end].decode("ascii"), agent_name, line.decode("utf-8"))
    return Event.from_json(line.decode("utf-8"))


@dataclass
class Damage:
    """What a scan found wrong in a segment: runs of unreadable lines, each ``[id before,
    number of lines, id after]`` (0 where there is no readable line on that side), and whether
    the last line lacks its newline (``torn``: a write cut short, not an event)."""

    runs: list[list[int]] = field(default_factory=list)
    torn: bool = False

    def __bool__(self) -> bool:
        return bool(self.runs) or self.torn

    @property
    def lines(self) -> int:
        return sum(run[1] for run in self.runs)


class Segment:
    """One history file: its place in the agent's numbering, id range, size and sparse index.

    ``count`` is the number of lines (events, readable or not) and ``events`` the readable ones;
    ``first_seq`` is the agent's number of its first line.
    """

    __slots__ = ("count", "events", "first_id", "first_seq", "index_ids", "index_offsets", "last_id", "number",
                 "path", "size")

    def __init__(self, directory: Path, number: int, first_seq: int) -> None:
        self.number = number
        self.path = directory / f"events.{number:06d}.jsonl"
        self.first_seq = first_seq
        self.first_id = 0
        self.last_id = 0
        self.count = 0
        self.events = 0
        self.size = 0
        self.index_ids: list[int] = []
        self.index_offsets: list[int] = []

    @property
    def end_seq(self) -> int:
        """The agent's number of the event after this segment's last line."""
        return self.first_seq + self.count

    def add(self, event_id: int, length: int) -> None:
        if self.events % INDEX_EVERY == 0:
            self.index_ids.append(event_id)
            self.index_offsets.append(self.size)
        if not self.events:
            self.first_id = event_id
        self.last_id = event_id
        self.count += 1
        self.events += 1
        self.size += length

    def scan(self) -> Damage:
        """Rebuild counters and index from the file. Lines that are no envelope, or whose id
        does not increase, are counted as damaged; a last line without its newline (a write
        cut short) is not an event and is left where it is. Raises ``OSError``."""
        damage = Damage()
        runs = damage.runs
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    damage.torn = True
                    break
                try:
                    event_id = fast_id(raw)
                except (ValueError, UnicodeDecodeError):
                    event_id = 0
                if event_id > self.last_id:
                    if runs and runs[-1][2] == 0:
                        runs[-1][2] = event_id
                    self.add(event_id, len(raw))
                    continue
                if runs and runs[-1][2] == 0:
                    runs[-1][1] += 1
                else:
                    runs.append([self.last_id, 1, 0])
                self.count += 1
                self.size += len(raw)
        return damage

    def start_offset(self, after_id: int) -> int:
        """Where to start reading for events newer than ``after_id``: an index entry at or
        before it (at most :data:`INDEX_EVERY` lines to skip)."""
        i = bisect.bisect_right(self.index_ids, after_id) - 1
        return self.index_offsets[i] if i >= 0 else 0

    def read(self, offset: int, limit_bytes: int = READ_CHUNK) -> tuple[list[bytes], int]:
        """Whole lines from ``offset``, about ``limit_bytes`` of them (at least one line if
        there is one), and the offset after the last; a torn last line is not returned. Raises
        ``OSError``."""
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(limit_bytes)
            while data and not data.endswith(b"\n") and b"\n" not in data:
                more = f.read(limit_bytes)  # one line longer than the chunk
                if not more:
                    break
                data += more
        end = data.rfind(b"\n") + 1
        if end == 0:
            return [], offset
        lines = data[:end].split(b"\n")
        lines.pop()  # the empty piece after the last newline
        return lines, offset + end
