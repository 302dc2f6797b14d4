"""The one event type that every consumer sees, and its JSON envelope.

``{"id": 42, "type": "log", "timestamp": "2026-11-21T12:00:00.123Z", "agent_name": "codex-1",
"data": {...}}``. The envelope is serialized once, when it is first asked for, and the same
string is written to the history file and framed for every SSE client.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

#: Event types. ``connected``, ``ping`` and ``reset`` exist only on the wire (the API makes them);
#: these are the ones the core produces and keeps in history.
LOG = "log"
EXTRACTION = "extraction"
STATE = "state"
COMPLETE = "complete"
ERROR = "error"
AGENT_ADDED = "agent_added"
AGENT_REMOVED = "agent_removed"

EVENT_TYPES = (LOG, EXTRACTION, STATE, COMPLETE, ERROR, AGENT_ADDED, AGENT_REMOVED)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def rfc3339(epoch: float) -> str:
    """``epoch`` seconds as RFC 3339 UTC with milliseconds: ``2026-11-21T12:00:00.123Z``."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Event:
    """One thing that happened to one agent; immutable once published.

    ``sse`` is a slot for the API: the event's SSE frame, encoded once and shared by every
    client. The core never reads it.
    """

    __slots__ = ("id", "type", "timestamp", "agent_name", "data", "_json", "sse")

    def __init__(
        self,
        id: int,
        type: str,
        agent_name: str,
        data: dict[str, Any],
        timestamp: str | None = None,
        json_text: str | None = None,
    ) -> None:
        self.id = id
        self.type = type
        self.agent_name = agent_name
        self.data = data
        self.timestamp = timestamp if timestamp is not None else rfc3339(time.time())
        self._json = json_text
        self.sse: bytes | None = None

    @property
    def json(self) -> str:
        """The envelope as compact JSON (one line: JSON escapes every newline)."""
        if self._json is None:
            self._json = _dumps(self.to_dict())
        return self._json

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "timestamp": self.timestamp,
            "agent_name": self.agent_name,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, text: str) -> Event:
        """Rebuild an event from its envelope (a history line); raises ``ValueError`` if malformed."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("event envelope is not an object")
        try:
            return cls(
                id=int(raw["id"]),
                type=str(raw["type"]),
                agent_name=str(raw["agent_name"]),
                data=dict(raw["data"]),
                timestamp=str(raw["timestamp"]),
                json_text=text.rstrip("\n"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"event envelope lacks a field: {exc}") from exc

    def __repr__(self) -> str:
        return f"<Event {self.id} {self.type} {self.agent_name!r}>"
