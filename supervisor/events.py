"""The one event type that every consumer sees, and its JSON envelope.

``{"id": 42, "type": "log", "timestamp": "2026-11-21T12:00:00.123Z", "agent_name": "codex-1",
"data": {...}}``. The envelope is serialized once, when it is first asked for, and the same
string is written to the history file and framed for every SSE client.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

#: Event types. ``connected``, ``ping`` and ``reset`` exist only on the wire (the API makes them);
#: these are the ones the core produces and keeps in history.
LOG = "log"
EXTRACTION = "extraction"
#: A settled virtual screen: its text, for consumers that do not follow the screen stream.
SCREEN = "screen"
STATE = "state"
COMPLETE = "complete"
ERROR = "error"
AGENT_ADDED = "agent_added"
AGENT_REMOVED = "agent_removed"
#: A run started or stopped waiting at a prompt (see supervisor.inputwait).
WAITING_INPUT = "waiting_input"

EVENT_TYPES = (LOG, EXTRACTION, SCREEN, STATE, COMPLETE, ERROR, AGENT_ADDED, AGENT_REMOVED, WAITING_INPUT)

# No circular-reference check: an event's data is built by the core from lines and matches, never
# self-referencing, and skipping the check makes every event's one encoding a fifth cheaper.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def rfc3339(epoch: float) -> str:
    """``epoch`` seconds as RFC 3339 UTC with milliseconds: ``2026-11-21T12:00:00.123Z``.

    Every event is stamped, so this is on the per-line path: the date and time of day are
    formatted once per second and reused (``datetime`` formatting cost more than the rest of
    making an event). Rounds like ``datetime.fromtimestamp``: to the nearest microsecond,
    half to even, then down to the millisecond.
    """
    global _stamped_second, _stamped_prefix
    whole = math.floor(epoch)
    micros = round((epoch - whole) * 1e6)
    if micros >= 1_000_000:
        whole += 1
        micros -= 1_000_000
    if whole != _stamped_second:
        _stamped_prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
        _stamped_second = whole
    return f"{_stamped_prefix}{micros // 1000:03d}Z"


#: The head of the envelope of an event whose id is not assigned yet.
_NO_ID = '{"id":0,'

_stamped_second: int | None = None
_stamped_prefix = ""


class Event:
    """One thing that happened to one agent; immutable once published.

    ``sse`` is a slot for the API: the event's SSE frame, encoded once and shared by every
    client. The core never reads it. An event read back from history (:meth:`stored`) keeps its
    line as it is and parses ``data`` and ``timestamp`` only when asked: a replay frames the
    line without ever decoding its JSON.
    """

    __slots__ = ("_data", "_json", "_timestamp", "agent_name", "id", "sse", "type")

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
        self._data: dict[str, Any] | None = data
        self._timestamp = timestamp if timestamp is not None else rfc3339(time.time())
        self._json = json_text
        self.sse: bytes | None = None

    @classmethod
    def stored(cls, id: int, type: str, agent_name: str, json_text: str) -> Event:
        """An event whose envelope is ``json_text`` (a history line): ``data`` and
        ``timestamp`` are parsed from it on first use."""
        event = cls.__new__(cls)
        event.id = id
        event.type = type
        event.agent_name = agent_name
        event._data = None
        event._timestamp = ""
        event._json = json_text
        event.sse = None
        return event

    def assign(self, id: int) -> None:
        """Give an event made with id 0 its id, once a backend that assigns ids at commit (the
        Redis backend: ids come from Redis) has it; its envelope, if already serialized, follows."""
        text = self._json
        if text is not None and text.startswith(_NO_ID):
            self._json = f'{{"id":{id},' + text[len(_NO_ID):]
        self.id = id

    def _parse(self) -> dict[str, Any]:
        assert self._json is not None
        raw = json.loads(self._json)
        data = raw.get("data") if isinstance(raw, dict) else None
        self._data = dict(data) if isinstance(data, dict) else {}
        self._timestamp = str(raw.get("timestamp", "")) if isinstance(raw, dict) else ""
        return self._data

    @property
    def data(self) -> dict[str, Any]:
        data = self._data
        return data if data is not None else self._parse()

    @property
    def timestamp(self) -> str:
        if self._data is None:
            self._parse()
        return self._timestamp

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
