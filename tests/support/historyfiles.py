"""The history files of a data directory, read the plain way: an oracle beside the server's own
reader. Every ``events.*.jsonl`` line that parses is an event; files are read incrementally
(segments only grow, and new ones appear), so a test can look again after each step cheaply.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class HistoryFiles:
    """Every event line found under ``data_dir``, by id: ``(channel, envelope text)``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.events: dict[int, tuple[str, str]] = {}
        self._read: dict[Path, int] = {}  # bytes of each file already taken in

    def refresh(self) -> HistoryFiles:
        folders = [self.data_dir / "supervisor", *sorted((self.data_dir / "agents").glob("*"))]
        for folder in folders:
            channel = "@supervisor" if folder.name == "supervisor" else folder.name
            for path in sorted(folder.glob("events.*.jsonl")):
                start = self._read.get(path, 0)
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read()
                end = data.rfind(b"\n") + 1
                for line in data[:end].splitlines():
                    try:
                        envelope: Any = json.loads(line)
                        self.events[int(envelope["id"])] = (channel, line.decode())
                    except (ValueError, KeyError, TypeError):
                        continue
                self._read[path] = start + end
        return self

    def ids(self, channel: str | None = None, after: int = 0) -> list[int]:
        """Ids of one channel (None: all), ascending, newer than ``after``."""
        return sorted(i for i, (c, _) in self.events.items() if i > after and (channel is None or c == channel))

    def envelope(self, event_id: int) -> dict[str, Any]:
        return json.loads(self.events[event_id][1])  # type: ignore[no-any-return]
