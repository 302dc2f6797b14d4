"""SSE framing (api/sse/frames.py), checked with the project's own SSE parser."""
from __future__ import annotations

import json

import pytest

from api.sse import frames as sse
from supervisor.events import Event

from support.sse import parse_frames


@pytest.mark.parametrize("payload", ["one", "two\nlines", "cr\rline", "crlf\r\nline", "trailing\n", "", "\n\n"])
def test_frame_is_newline_safe(payload: str) -> None:
    """Any payload becomes one frame whose data lines join back to the payload (line breaks as LF)."""
    data = sse.frame(payload, "log", 7)
    assert data.endswith(b"\n\n") and b"\n\n" not in data[:-2], "exactly one frame end"
    frames = parse_frames(data)
    assert len(frames) == 1
    assert frames[0].id == "7" and frames[0].event == "log"
    assert frames[0].data == payload.replace("\r\n", "\n").replace("\r", "\n")


def test_fields_cannot_be_injected() -> None:
    """An event name or id with line breaks cannot add fields or end the frame."""
    data = sse.frame("x", "log\nid: 99", "5\n\nevent: evil")
    frames = parse_frames(data)
    assert len(frames) == 1 and frames[0].event == "logid: 99" and frames[0].id == "5event: evil"


def test_event_frame_is_encoded_once_and_cached() -> None:
    """A stored event is framed once; every later call returns the very same bytes object."""
    event = Event(42, "log", "a", {"line": "multi\nline \u00e9", "line_num": 1})
    first = sse.event_frame(event)
    assert sse.event_frame(event) is first
    frames = parse_frames(first)
    assert frames[0].id == "42" and first.count(b"\ndata: ") == 1, "one data line"
    assert json.loads(frames[0].data)["data"]["line"] == "multi\nline \u00e9"


def test_retry() -> None:
    """retry: carries the reconnection delay in milliseconds."""
    assert sse.retry(3000) == b"retry: 3000\n\n"




def test_plain_frame_carries_the_line_without_escapes() -> None:
    """The strip_ansi form of a log event has the plain text as its line and no plain field."""
    event = Event(3, "log", "a", {"line": "\x1b[31mred\x1b[0m", "plain": "red", "line_num": 1})
    data = json.loads(parse_frames(sse.plain_frame(event))[0].data)["data"]
    assert data == {"line": "red", "line_num": 1}
    other = Event(4, "state", "a", {"state": "running"})
    assert sse.plain_frame(other) is sse.event_frame(other)


def test_named_frames_have_no_id() -> None:
    """Frames that exist only on the wire carry no id, so a client's Last-Event-ID stays put."""
    frame = parse_frames(sse.named("ping", {"time": "now"}))[0]
    assert frame.event == "ping" and frame.id is None and frame.json() == {"time": "now"}
