"""TerminalResponder: the answers xterm would give to a program's terminal queries."""
from __future__ import annotations

import pytest

from supervisor.terminal import TerminalResponder

CPR = b"\x1b[6n"


def test_plain_output_gets_no_reply() -> None:
    """Output without escape sequences, or with ones that are not queries, is answered by nothing."""
    responder = TerminalResponder()
    assert responder.feed(b"hello\r\nworld\r\n") == b""
    assert responder.feed(b"\x1b[1mbold\x1b[0m \x1b[?25l\x1b]0;title\x07") == b""


def test_cursor_position_at_the_start() -> None:
    """Before any output the cursor is reported at row 1, column 1."""
    assert TerminalResponder().feed(CPR) == b"\x1b[1;1R"


def test_cursor_position_follows_text() -> None:
    """The column counts characters since the last CR or LF, the row the newlines so far."""
    responder = TerminalResponder()
    assert responder.feed(b"hello" + CPR) == b"\x1b[1;6R"
    assert responder.feed(b"\r\nab\r\nxy" + CPR) == b"\x1b[3;3R"
    assert responder.feed(b"\rz" + CPR) == b"\x1b[3;2R"


def test_cursor_column_counts_characters_not_bytes() -> None:
    """A multi-byte UTF-8 character moves the cursor one column."""
    assert TerminalResponder().feed("✓ ok".encode() + CPR) == b"\x1b[1;5R"


def test_cursor_row_capped_at_screen_height() -> None:
    """The row never goes past the last row of the screen; the column never past the last column."""
    responder = TerminalResponder(cols=10, rows=24)
    assert responder.feed(b"\r\n" * 30 + b"x" * 50 + CPR) == b"\x1b[24;10R"


def test_private_cursor_position_query() -> None:
    """``ESC[?6n`` is answered like ``ESC[6n``."""
    assert TerminalResponder().feed(b"ab\x1b[?6n") == b"\x1b[1;3R"


def test_cursor_moves_are_followed() -> None:
    """Absolute and relative cursor moves change the reported position, clamped to the screen."""
    responder = TerminalResponder()
    assert responder.feed(b"\x1b[5;10H" + CPR) == b"\x1b[5;10R"
    assert responder.feed(b"\x1b[2A\x1b[3C" + CPR) == b"\x1b[3;13R"
    assert responder.feed(b"\x1b[H" + CPR) == b"\x1b[1;1R"
    assert responder.feed(b"\x1b[99;999H" + CPR) == b"\x1b[24;80R"
    assert responder.feed(b"\x1b[7G\x1b[4d" + CPR) == b"\x1b[4;7R"


@pytest.mark.parametrize("query", [b"\x1b[c", b"\x1b[0c"])
def test_primary_device_attributes(query: bytes) -> None:
    """DA1 is answered as a VT220-class terminal with ANSI colour."""
    assert TerminalResponder().feed(query) == b"\x1b[?62;22c"


@pytest.mark.parametrize("query", [b"\x1b[>c", b"\x1b[>0c"])
def test_secondary_device_attributes(query: bytes) -> None:
    """DA2 is answered with xterm's identification."""
    assert TerminalResponder().feed(query) == b"\x1b[>0;276;0c"


@pytest.mark.parametrize("st", [b"\x07", b"\x1b\\"])
def test_colour_queries_answered_with_the_same_terminator(st: bytes) -> None:
    """OSC 10 and 11 colour queries get the colour back, ended by BEL or ST as they were."""
    responder = TerminalResponder()
    assert responder.feed(b"\x1b]10;?" + st) == b"\x1b]10;rgb:d0d0/d0d0/d0d0" + st
    assert responder.feed(b"\x1b]11;?" + st) == b"\x1b]11;rgb:1e1e/1e1e/1e1e" + st


def test_other_osc_gets_no_reply() -> None:
    """Setting a colour or a title is not a query and gets no answer."""
    assert TerminalResponder().feed(b"\x1b]11;#000000\x07\x1b]12;?\x07\x1b]2;x\x1b\\") == b""


def test_size_report_follows_resize() -> None:
    """``ESC[18t`` reports the text area in characters, as last set by resize()."""
    responder = TerminalResponder(cols=80, rows=24)
    assert responder.feed(b"\x1b[18t") == b"\x1b[8;24;80t"
    responder.resize(120, 40)
    assert responder.feed(b"\x1b[18t") == b"\x1b[8;40;120t"


def test_resize_clamps_the_cursor_row() -> None:
    """After shrinking the screen, the reported row is within the new height."""
    responder = TerminalResponder(rows=24)
    responder.feed(b"\n" * 20)
    responder.resize(80, 10)
    assert responder.feed(CPR) == b"\x1b[10;1R"


def test_device_status() -> None:
    """``ESC[5n`` (are you OK?) is answered ``ESC[0n``."""
    assert TerminalResponder().feed(b"\x1b[5n") == b"\x1b[0n"


# What crossterm sends when the codex CLI starts, with output before and between the queries.
_STARTUP = b"\x1b[?1049h\x1b[?25l>_ \x1b[6n\x1b]10;?\x1b\\\x1b]11;?\x07\x1b[?u\x1b[c\x1b[>c\x1b[18t"
_STARTUP_REPLY = (
    b"\x1b[1;4R"
    b"\x1b]10;rgb:d0d0/d0d0/d0d0\x1b\\"
    b"\x1b]11;rgb:1e1e/1e1e/1e1e\x07"
    b"\x1b[?62;22c"
    b"\x1b[>0;276;0c"
    b"\x1b[8;24;80t"
)


def test_several_queries_answered_in_order() -> None:
    """Queries in one chunk are answered in the order they were asked, in one reply."""
    assert TerminalResponder().feed(_STARTUP) == _STARTUP_REPLY


@pytest.mark.parametrize("at", range(1, len(_STARTUP)))
def test_query_split_between_chunks_still_answered(at: int) -> None:
    """Cut anywhere, the queries are answered once each when their last byte arrives."""
    responder = TerminalResponder()
    replies = responder.feed(_STARTUP[:at]) + responder.feed(_STARTUP[at:])
    assert replies == _STARTUP_REPLY


def test_queries_fed_one_byte_at_a_time() -> None:
    """Even fed byte by byte, every query is answered exactly once."""
    responder = TerminalResponder()
    replies = b"".join(responder.feed(_STARTUP[i:i + 1]) for i in range(len(_STARTUP)))
    assert replies == _STARTUP_REPLY


def test_long_unfinished_sequence_is_not_carried() -> None:
    """An unterminated OSC longer than any query is dropped, not kept growing."""
    responder = TerminalResponder()
    assert responder.feed(b"\x1b]0;" + b"t" * 1000) == b""
    reply = responder.feed(b"\x07" + CPR)
    assert reply.startswith(b"\x1b[1;") and reply.endswith(b"R")


def test_the_keyboard_protocol_query_is_left_unanswered_as_xterm_does() -> None:
    """codex (crossterm) asks for the kitty keyboard protocol's flags (``CSI ? u``) and then for
    the device attributes: only the second is answered, as xterm and tmux 3.3a answer, so the
    program knows the protocol is off and sends nothing for it; the keys a terminal (xterm.js in
    the dashboard, the /input API) sends are the legacy ones codex then reads."""
    responder = TerminalResponder()
    assert responder.feed(b"\x1b[>7u\x1b[?u\x1b[c") == b"\x1b[?62;22c"
