"""A screen worker: one agent's terminal emulator in a process of its own.

``python -m supervisor.screen.worker COLS ROWS [GEN]`` reads frames (:mod:`.protocol`) on
stdin, feeds a :class:`~supervisor.screen.VirtualScreen`, answers terminal queries, and writes
on stdout the rows that changed, coalesced: at most one update every :data:`INTERVAL_S`, and
one at once when asked to sync. It ends at the end of its stdin (the server closed the pipe,
or died).

Why a process: the emulator costs 150-190 µs per KB of full-screen output. In the server's own
process, a TUI drawing 1 MB/s made the server use a third of a core more, and on a busy machine
the busier process waits for a core more often: every other agent's stream ran late
(docs/PERFORMANCE.md). Here the emulator's work is another process's, at a lower priority
(:data:`NICE`): the server stays as idle as without the screen, and the scheduler gives it a
core first. No gevent here, and nothing of the server is imported but the emulator.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from typing import Any

from supervisor.screen.emulator import VirtualScreen
from supervisor.screen.protocol import (
    DATA,
    QUERIES,
    REPLY,
    RESIZE,
    RESIZE_BODY,
    SYNC,
    SYNCED,
    UPDATE,
    FrameReader,
    frame,
)
from supervisor.terminal import QueryAnswerer

__all__ = ["INTERVAL_S", "NICE", "main"]

#: Updates are sent at most this often (the screen streams coalesce to 50 ms on top).
INTERVAL_S = 0.02
#: The worker's niceness: the screen is a view, the server's streams come first (nice 5 gave
#: tui-1mb 1.42x, nice 10 1.18x: docs/PERFORMANCE.md).
NICE = 10


class Worker:
    """The screen, what was sent of it, and the stdout it writes to."""

    def __init__(self, cols: int, rows: int, gen: int, out: int = 1) -> None:
        self.screen = VirtualScreen(cols, rows)
        self.answerer = QueryAnswerer()
        self.gen = gen
        self.out = out
        self.sent_seq = self.screen.seq
        self.sent_at = 0.0
        # What the server has of each row, and the rest of the last update: a TUI redraws
        # whole screens that mostly did not change, and unchanged rows are not sent again.
        self.sent_rows: list[tuple[str, str, bool]] = [("", "", False)] * rows
        self.sent_rest: tuple[Any, ...] = ()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.out, view):]

    def handle(self, kind: bytes, payload: bytes) -> None:
        screen = self.screen
        if kind == DATA or kind == QUERIES:
            screen.feed(payload)
            if kind == QUERIES:
                cursor = screen.cursor
                reply = self.answerer.feed(payload, (cursor.x, cursor.y), (screen.cols, screen.rows))
                if reply:
                    self.write(frame(REPLY, reply))
        elif kind == RESIZE:
            cols, rows, self.gen = RESIZE_BODY.unpack(payload)
            screen.resize(max(cols, 1), max(rows, 1))
        elif kind == SYNC:
            self.send_update()
            self.write(frame(SYNCED, payload))

    @property
    def dirty(self) -> bool:
        return self.screen.seq != self.sent_seq

    def send_update(self, always: bool = False) -> None:
        """The rows changed since the last update, if any (``always``: even none)."""
        self.sent_at = time.monotonic()
        if not self.dirty and not always:
            return
        changes = self.screen.changes(self.sent_seq)
        self.sent_seq = changes["seq"]
        rows = self.sent_rows
        resized = len(rows) != changes["rows"] or self.sent_rest[:2] != (changes["cols"], changes["rows"])
        if resized:
            rows = self.sent_rows = [("", "", False)] * changes["rows"]
        changed = []
        for c in changes["changed"]:
            row = (c["text"], c["ansi"], c["wrapped"])
            if resized or rows[c["row"]] != row:
                rows[c["row"]] = row
                changed.append([c["row"], *row])
        rest = (changes["cols"], changes["rows"], changes["cursor"], changes["alternate"], changes["modes"], self.gen)
        if not changed and rest == self.sent_rest and not always:
            return
        self.sent_rest = rest
        update = {
            "gen": self.gen, "cols": changes["cols"], "rows": changes["rows"], "cursor": changes["cursor"],
            "alternate": changes["alternate"], "modes": changes["modes"], "changed": changed,
        }
        self.write(frame(UPDATE, json.dumps(update, ensure_ascii=False, separators=(",", ":")).encode()))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server ends it (its stdin's end), not ^C
    try:
        os.nice(NICE)
    except OSError:
        pass
    cols, rows = int(argv[0]), int(argv[1])
    worker = Worker(cols, rows, int(argv[2]) if len(argv) > 2 else 0)
    reader = FrameReader()
    # What waited in the pipe when it started (the server writes the first output at once),
    # then a first update, even of a blank screen: the server shows the screen from then on.
    while select.select([0], [], [], 0)[0]:
        data = os.read(0, 1 << 16)
        if not data:
            return 0
        for kind, payload in reader.feed(data):
            worker.handle(kind, payload)
    worker.send_update(always=True)
    while True:
        timeout = None
        if worker.dirty:
            timeout = max(0.0, worker.sent_at + INTERVAL_S - time.monotonic())
        ready, _, _ = select.select([0], [], [], timeout)
        if ready:
            data = os.read(0, 1 << 16)
            if not data:
                return 0
            for kind, payload in reader.feed(data):
                worker.handle(kind, payload)
        if worker.dirty and time.monotonic() - worker.sent_at >= INTERVAL_S:
            worker.send_update()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # the server is gone
        sys.exit(0)
