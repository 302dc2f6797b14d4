"""How an event is kept in a stream entry, and read back.

An entry's id is ``<event id>-0`` and its ``event`` field is the event's JSON envelope, byte for
byte what the embedded backend writes to its history files and frames for SSE. The id is only
known inside Redis, so the node sends the envelope without its head (:func:`envelope_tail`) and
the append script puts ``{"id":N,`` in front. Entries of the all-agents stream also have a
``channel`` field: the history the event belongs to (its agent, or the supervisor's channel).
"""
from __future__ import annotations

import re
from typing import Any, cast

from ..events import Event

_HEAD = '{"id":0,'
#: The head of an envelope as :class:`Event` writes it: id, type, timestamp, agent name (no
#: escapes: types are words, agent names letters, digits and ``._-@``).
_HEAD_RE = re.compile(r'\{"id":(\d+),"type":"([a-z_]+)","timestamp":"[^"\\]*","agent_name":"([A-Za-z0-9._@-]+)",')


def envelope_tail(type: str, agent_name: str, data: dict[str, Any], timestamp: str | None = None) -> str:
    """The event's envelope after ``{"id":N,``, serialized by :class:`Event` itself."""
    text = Event(0, type, agent_name, data, timestamp).json
    assert text.startswith(_HEAD)
    return text[len(_HEAD):]


def stream_id(event_id: int) -> str:
    return f"{event_id}-0"


def event_id(entry_id: bytes | str) -> int:
    """The event id of a stream entry id ``<id>-0``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def to_event(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
    """The event of one entry; raises ``ValueError`` when the entry is not one of ours or its
    envelope disagrees with its entry id.

    Like a line of the embedded history, the envelope is kept as it is and its ``data`` parsed
    only when asked (:meth:`Event.stored`): a node relays most events to its clients without
    ever decoding them. The id, type and agent are read from the envelope's head, which our
    one serializer writes in a fixed order; anything else is parsed in full."""
    try:
        text = fields[b"event"].decode("utf-8")
    except (KeyError, UnicodeDecodeError) as exc:
        raise ValueError(f"stream entry {entry_id!r} holds no event") from exc
    return parse(event_id(entry_id), text)


def parse(number: int, text: str) -> Event:
    """The event of entry ``number`` whose envelope is ``text`` (see :func:`to_event`)."""
    head = _HEAD_RE.match(text)
    if head is not None and int(head[1]) == number:
        return Event.stored(number, head[2], head[3], text)
    event = Event.from_json(text)
    if event.id != number:
        raise ValueError(f"stream entry {number} holds event {event.id}")
    return event


def channel(fields: dict[bytes, bytes]) -> str:
    """The channel of an entry of the all-agents stream."""
    return fields[b"channel"].decode("utf-8")


#: One stream entry as the client returns it: its id and its fields.
Entry = tuple[bytes, dict[bytes, bytes]]


def page(reply: Any) -> list[Entry]:
    """The entries of an ``XRANGE``/``XREVRANGE`` reply (redis-py types them loosely)."""
    return cast(list[Entry], reply or [])


def read_reply(reply: Any) -> list[Entry]:
    """The entries of an ``XREAD`` reply of one stream (none when it timed out)."""
    return cast(list[Entry], reply[0][1]) if reply else []


#: One entry of an ``XREAD`` reply left as Redis sent it: its id and its fields as a flat list
#: (``[b"channel", channel, b"event", envelope]`` in the all-agents stream).
RawEntry = tuple[bytes, list[bytes]]


def raw_xread(response: Any, **options: Any) -> Any:
    """A response callback for ``XREAD`` that leaves the reply as it came: the tailer reads
    thousands of entries a second and needs two fields of each, by position, not a dict."""
    return response


def raw_reply(reply: Any) -> list[RawEntry]:
    """The entries of a raw ``XREAD`` reply of one stream (see :func:`raw_xread`)."""
    return cast(list[RawEntry], reply[0][1]) if reply else []


def raw_fields(fields: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(fields[::2], fields[1::2]))
