"""Server-Sent Events framing: pure functions from values to the bytes on the wire.

Newline-safe by construction: a payload is split on every line break the SSE parser knows
(CRLF, LF, CR) and each piece gets its own ``data:`` line, so no payload can end a frame early or
inject a field. Frames are built once per event (see :func:`event_frame`) and shared by every
client.
"""
from __future__ import annotations

import json
import re
from typing import Any

from supervisor import events
from supervisor.events import Event

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FIELD_SAFE = re.compile(r"[\r\n\x00]")


def frame(data: str, event: str | None = None, id: int | str | None = None) -> bytes:
    """One SSE message: optional ``id:`` and ``event:`` fields, one ``data:`` line per line of
    ``data``, and the blank line that dispatches it."""
    parts = []
    if id is not None:
        parts.append(f"id: {_FIELD_SAFE.sub('', str(id))}\n")
    if event is not None:
        parts.append(f"event: {_FIELD_SAFE.sub('', event)}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def retry(milliseconds: int) -> bytes:
    """The reconnection delay a browser's EventSource should use."""
    return f"retry: {int(milliseconds)}\n\n".encode()


def event_frame(event: Event) -> bytes:
    """The frame of a stored event, encoded on first use and cached on the event itself.

    The envelope JSON never holds a raw line break (JSON escapes them), so the common case is
    a single ``data:`` line and the generic splitter is skipped.
    """
    cached = event.sse
    if cached is None:
        payload = event.json
        if "\n" in payload or "\r" in payload:  # cannot happen with json.dumps; be safe anyway
            cached = frame(payload, event.type, event.id)
        else:
            cached = f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n".encode()
        event.sse = cached
    return cached


def plain_frame(event: Event) -> bytes:
    """The frame for clients that asked for ``strip_ansi``: ``line`` without escape sequences.
    Made per batch of a flush, not cached: few clients ask for it."""
    data = event.data
    if event.type != events.LOG or "plain" not in data:
        return event_frame(event)
    stripped = {k: v for k, v in data.items() if k != "plain"}
    stripped["line"] = data["plain"]
    return event_frame(Event(event.id, event.type, event.agent_name, stripped, event.timestamp))


def named(kind: str, payload: dict[str, Any]) -> bytes:
    """A frame that exists only on the wire (``connected``, ``reset``, ``ping``, ``error``):
    no ``id``, so it does not move the client's Last-Event-ID."""
    return frame(json.dumps(payload), kind)
