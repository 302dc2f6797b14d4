"""The SSE parser of :mod:`supervisor.client`, on bytes alone (WHATWG "Server-sent events", 9.2.6).

No server and no sockets: every rule is checked by feeding bytes, and the rules that depend on
where a read ends (a CRLF or a UTF-8 character cut in two) are checked at every cut.
"""
from __future__ import annotations

import pytest

from supervisor.client import SSEEvent, SSEParser


def parse(*chunks: bytes, last_event_id: str = "") -> list[SSEEvent]:
    parser = SSEParser(last_event_id)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def every_split(data: bytes) -> list[list[SSEEvent]]:
    """The events of ``data`` fed in two reads, for every place the first read can end."""
    return [parse(data[:cut], data[cut:]) for cut in range(len(data) + 1)]


SERVER_FRAMES = (
    b"retry: 3000\n\n"
    b"event: connected\n"
    b'data: {"client_id": "c17", "agent_name": "build", "last_event_id": 812}\n\n'
    b"id: 813\nevent: log\n"
    b'data: {"id":813,"type":"log","data":{"line":"building 100%","line_num":7}}\n\n'
    b": keep-alive comment lines are allowed anywhere\n\n"
    b'event: ping\ndata: {"time": "2026-11-21T12:00:15.000Z"}\n\n'
)


def test_server_frames_from_the_api_document() -> None:
    """The stream shown in docs/API.md parses into connected, log and ping, with ids and retry."""
    parser = SSEParser()
    events = parser.feed(SERVER_FRAMES)
    assert [(e.event, e.id) for e in events] == [("connected", None), ("log", "813"), ("ping", None)]
    assert events[1].json()["data"]["line"] == "building 100%"
    assert events[2].last_event_id == "813"
    assert parser.retry_ms == 3000
    assert parser.last_event_id == "813"


def test_event_without_a_type_is_a_message() -> None:
    """A block with data and no ``event:`` field is dispatched as type ``message``."""
    assert parse(b"data: hello\n\n") == [SSEEvent("message", "hello", None, "")]


def test_data_lines_are_joined_with_newlines() -> None:
    """Several ``data:`` lines make one payload joined by LF, with no trailing LF."""
    assert parse(b"data: a\ndata: b\ndata:\ndata: c\n\n")[0].data == "a\nb\n\nc"


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_all_three_line_ends(eol: bytes) -> None:
    """LF, CRLF and a bare CR each end a line, and two of them end an event."""
    data = eol.join([b"event: log", b"id: 7", b"data: one", b"data: two", b"", b"data: three", b"", b""])
    events = parse(data)
    assert [(e.event, e.data, e.id) for e in events] == [("log", "one\ntwo", "7"), ("message", "three", None)]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_a_read_may_end_anywhere(eol: bytes) -> None:
    """Cutting the bytes at any point gives the same events; a CRLF cut between CR and LF is
    still one line break (else "a" and "b" would be dispatched as two events)."""
    data = eol.join([b"id: 1", b"data: a", b"data: b", b"", b"event: x", b"data: c", b"", b""])
    whole = parse(data)
    assert [e.data for e in whole] == ["a\nb", "c"]
    for events in every_split(data):
        assert events == whole


def test_fed_one_byte_at_a_time() -> None:
    """Reads of a single byte (the worst a socket can do) give the same events."""
    data = SERVER_FRAMES.replace(b"\n", b"\r\n")
    assert parse(*(data[i:i + 1] for i in range(len(data)))) == parse(SERVER_FRAMES)


def test_utf8_character_split_between_reads() -> None:
    """A multi-byte character cut by a read boundary is decoded whole, at every cut."""
    data = "data: ✓ tâche terminée 🚀\n\n".encode()
    for events in every_split(data):
        assert [e.data for e in events] == ["✓ tâche terminée 🚀"]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    """Bytes that are not UTF-8 become U+FFFD instead of breaking the stream."""
    assert parse(b"data: a\xffb\n\n")[0].data == "a\ufffdb"


def test_leading_byte_order_mark_is_skipped_once() -> None:
    """A BOM at the very start is dropped; the first field is still recognised."""
    events = parse(b"\xef\xbb", b"\xbfdata: x\n\n")
    assert [e.data for e in events] == ["x"]


def test_byte_order_mark_later_is_not_skipped() -> None:
    """Only the stream's first character may be a BOM: later, it makes an unknown field name."""
    assert parse(b"data: x\n\n\xef\xbb\xbfdata: y\n\n") == [SSEEvent("message", "x", None, "")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    """Lines starting with a colon and fields other than event/data/id/retry change nothing."""
    assert parse(b": hello\nfoo: bar\ndata: x\n: more\n\n") == [SSEEvent("message", "x", None, "")]


def test_only_one_space_after_the_colon_is_removed() -> None:
    """``data:x`` and ``data: x`` are the same; a second space belongs to the value."""
    assert [e.data for e in parse(b"data:x\n\ndata: x\n\ndata:  x\n\n")] == ["x", "x", " x"]


def test_field_name_without_colon_has_an_empty_value() -> None:
    """A line ``data`` is the data field with an empty value."""
    assert [e.data for e in parse(b"data\ndata\n\n")] == ["\n"]


def test_a_colon_in_the_value_is_kept() -> None:
    """Only the first colon separates name and value (JSON payloads are full of colons)."""
    assert parse(b'data: {"a": "b:c"}\n\n')[0].json() == {"a": "b:c"}


def test_block_without_data_is_not_dispatched_and_its_type_does_not_leak() -> None:
    """``event:`` with no data dispatches nothing, and the next event gets the default type."""
    assert [(e.event, e.data) for e in parse(b"event: log\n\ndata: x\n\n")] == [("message", "x")]


def test_id_without_data_still_sets_the_last_event_id() -> None:
    """An ``id:``-only block is not an event but moves the id a reconnection would resume from."""
    parser = SSEParser()
    assert parser.feed(b"id: 41\n\n") == []
    assert parser.last_event_id == "41"
    event = parser.feed(b"data: x\n\n")[0]
    assert (event.id, event.last_event_id) == (None, "41")


def test_last_event_id_persists_across_events_and_is_not_reset_by_types() -> None:
    """An event without ``id:`` has ``id`` None but keeps the stream's last event id."""
    events = parse(b"id: 5\ndata: a\n\nevent: ping\ndata: b\n\nid: 6\ndata: c\n\n")
    assert [(e.id, e.last_event_id) for e in events] == [("5", "5"), (None, "5"), ("6", "6")]


def test_initial_last_event_id_is_kept_until_a_new_one_arrives() -> None:
    """A parser for a reconnection starts from the id the previous connection reached."""
    events = parse(b"event: connected\ndata: {}\n\nid: 9\ndata: x\n\n", last_event_id="8")
    assert [(e.event, e.last_event_id) for e in events] == [("connected", "8"), ("message", "9")]


def test_id_containing_nul_is_ignored() -> None:
    """An ``id:`` with a NUL character does not change the last event id."""
    events = parse(b"id: 3\ndata: a\n\nid: 4\x005\ndata: b\n\n")
    assert [(e.id, e.last_event_id) for e in events] == [("3", "3"), (None, "3")]


def test_empty_id_resets_the_last_event_id() -> None:
    """``id:`` with nothing after it sets the last event id to the empty string."""
    events = parse(b"id: 3\ndata: a\n\nid\ndata: b\n\n")
    assert events[1].last_event_id == ""


@pytest.mark.parametrize(("line", "expected"), [
    (b"retry: 2500", 2500), (b"retry:10", 10), (b"retry: 10x", None), (b"retry: -1", None),
    (b"retry: 1.5", None), (b"retry:", None), (b"retry: \xd9\xa3", None),
], ids=["plain", "no-space", "letters", "negative", "fraction", "empty", "arabic-digit"])
def test_retry_accepts_ascii_digits_only(line: bytes, expected: int | None) -> None:
    """``retry:`` sets the reconnection delay only when its value is ASCII digits."""
    parser = SSEParser()
    parser.feed(line + b"\n\n")
    assert parser.retry_ms == expected


def test_incomplete_event_at_the_end_is_not_dispatched() -> None:
    """An event whose blank line never came is held back (and lost if the stream ends)."""
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: b\n") == [SSEEvent("message", "a", None, "")]
    assert parser.feed(b"\n") == [SSEEvent("message", "b", None, "")]


def test_event_type_is_reset_after_each_dispatch() -> None:
    """The type applies to one event only."""
    assert [e.event for e in parse(b"event: log\ndata: a\n\ndata: b\n\n")] == ["log", "message"]


def test_last_value_of_a_repeated_field_wins() -> None:
    """``event:`` and ``id:`` given twice in one block take the second value."""
    event = parse(b"event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n")[0]
    assert (event.event, event.id) == ("b", "2")
