"""Answers to the questions a program asks its terminal, for a PTY that nobody is looking at.

Full-screen programs ask the terminal where the cursor is, what it is and what colours it uses,
and wait for the answer before drawing anything: the codex CLI (Rust, crossterm) shows nothing
until its cursor-position and colour queries are answered. Under the supervisor there is no
terminal, so :class:`TerminalResponder` reads the program's output and writes back what xterm
would.

Not answered, on purpose: the kitty keyboard protocol's query (``CSI ? u``, which codex sends
with ``CSI > 7 u``). xterm and tmux 3.3a do not answer it either; crossterm then takes the
device-attributes answer that follows as "no keyboard enhancement" and reads the legacy keys
(``ESC``, ``\x03``, ``ESC [ A``) that the dashboard's terminal and the ``/input`` API send.
Answering it would make codex expect ``CSI u``-encoded keys that they do not send.

The cursor is tracked roughly, enough for a sensible position report: the column counts the
characters since the last CR or LF, the row the newlines since the start (at most ``rows``), and
absolute and relative cursor moves are followed. Wrapping, scrolling regions and wide characters
are not modelled.
"""
from __future__ import annotations

import re

from .ansi import (
    CSI_FINAL,
    CSI_INTERMEDIATES,
    CSI_PARAMS,
    ESC_OTHER,
    OSC_START,
    STRING_BODY,
    STRING_END,
    UNFINISHED,
    as_bytes,
)

__all__ = ["QueryAnswerer", "TerminalResponder"]

#: Queries and cursor moves, in bytes, from the grammar of :mod:`supervisor.ansi`. ``tail`` is an
#: escape sequence cut off by the end of the chunk, kept for the next one; it comes before the
#: catch-all so that ``ESC ]`` of an unfinished OSC is not taken for a complete two-byte escape.
_SEQUENCE = re.compile(as_bytes(
    rf"\x1b\[(?P<params>{CSI_PARAMS})(?P<inter>{CSI_INTERMEDIATES})(?P<final>{CSI_FINAL})"
    rf"|{OSC_START}(?P<osc>{STRING_BODY})(?P<st>{STRING_END})"
    rf"|(?P<tail>{UNFINISHED})"
    rf"|{ESC_OTHER}"
))

#: Longest unfinished sequence carried over to the next chunk; a longer one is no query.
_CARRY_MAX = 64

#: What xterm says it is: a VT220 with ANSI colour (primary), and its version (secondary).
_PRIMARY_DA = b"\x1b[?62;22c"
_SECONDARY_DA = b"\x1b[>0;276;0c"

#: Default foreground and background for OSC 10 / 11 queries: light grey on near-black.
_COLOURS = {b"10": b"rgb:d0d0/d0d0/d0d0", b"11": b"rgb:1e1e/1e1e/1e1e"}


def _width(text: bytes) -> int:
    """Columns taken by ``text``, counting characters rather than UTF-8 bytes (roughly)."""
    if text.isascii():
        return len(text)
    return len(text.decode("utf-8", "ignore"))


def _number(params: bytes, index: int, default: int) -> int:
    parts = params.split(b";")
    if index < len(parts) and parts[index].isdigit():
        return int(parts[index]) or default
    return default


class TerminalResponder:
    """Answers the queries a full-screen program sends to its terminal, as xterm would.

    Answers: cursor position (``ESC[6n``, ``ESC[?6n``), status (``ESC[5n``), primary and
    secondary device attributes (``ESC[c``, ``ESC[>c``), foreground and background colour
    (``OSC 10;?`` / ``OSC 11;?``, answered with the query's own terminator) and text-area size
    (``ESC[18t``). A query split across two chunks is answered when its end arrives. Output
    without ``ESC`` costs one scan for it and a count of newlines. Not safe to share between
    threads.
    """

    __slots__ = ("_carry", "_col", "_cols", "_row", "_rows")

    def __init__(self, cols: int = 80, rows: int = 24) -> None:
        self._cols = cols
        self._rows = rows
        self._row = 1  # 1-based, like the reports
        self._col = 0  # 0-based: characters since the last CR or LF
        self._carry = b""

    def resize(self, cols: int, rows: int) -> None:
        """The PTY's window size changed; later reports use (and are clamped to) the new one."""
        self._cols = cols
        self._rows = rows
        self._row = min(self._row, rows)

    def feed(self, data: bytes) -> bytes:
        """Read the program's output; return the bytes to write back to it (``b""`` if none)."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if b"\x1b" not in data:
            self._advance(data)
            return b""
        replies: list[bytes] = []
        pos = 0
        for m in _SEQUENCE.finditer(data):
            if m.start() > pos:
                self._advance(data[pos:m.start()])
            pos = m.end()
            if m.group("tail") is not None:
                if len(m.group()) <= _CARRY_MAX:
                    self._carry = m.group()
                break
            reply = self._sequence(m)
            if reply:
                replies.append(reply)
        if pos < len(data):
            self._advance(data[pos:])
        return b"".join(replies)

    def _advance(self, text: bytes) -> None:
        """Move the cursor over printed text."""
        newlines = text.count(b"\n")
        if newlines:
            self._row = min(self._rows, self._row + newlines)
        start = max(text.rfind(b"\n"), text.rfind(b"\r")) + 1
        if start:
            self._col = 0
        self._col += _width(text[start:] if start else text)

    def _sequence(self, m: re.Match[bytes]) -> bytes:
        final = m.group("final")
        if final is None:
            osc = m.group("osc")
            if osc is not None:
                name, _, value = osc.partition(b";")
                if value == b"?" and name in _COLOURS:
                    return b"\x1b]" + name + b";" + _COLOURS[name] + m.group("st")
            return b""
        params = m.group("params")
        if m.group("inter"):
            return b""
        if final == b"n":
            if params in (b"6", b"?6"):
                row = min(self._row, self._rows)
                col = min(self._col, self._cols - 1) + 1
                return b"\x1b[%d;%dR" % (row, col)
            if params == b"5":
                return b"\x1b[0n"
        elif final == b"c":
            if params in (b"", b"0"):
                return _PRIMARY_DA
            if params in (b">", b">0"):
                return _SECONDARY_DA
        elif final == b"t":
            if params == b"18":
                return b"\x1b[8;%d;%dt" % (self._rows, self._cols)
        elif params[:1] not in (b"?", b">", b"<", b"="):
            self._move(params, final)
        return b""

    def _move(self, params: bytes, final: bytes) -> None:
        """Follow a cursor move, clamped to the screen."""
        n = _number(params, 0, 1)
        if final in (b"H", b"f"):
            self._row = _number(params, 0, 1)
            self._col = _number(params, 1, 1) - 1
        elif final in (b"G", b"`"):
            self._col = n - 1
        elif final == b"d":
            self._row = n
        elif final == b"A":
            self._row -= n
        elif final == b"B":
            self._row += n
        elif final == b"C":
            self._col += n
        elif final == b"D":
            self._col -= n
        elif final in (b"E", b"F"):
            self._row += n if final == b"E" else -n
            self._col = 0
        else:
            return
        self._row = min(max(self._row, 1), self._rows)
        self._col = min(max(self._col, 0), self._cols - 1)


#: The queries alone, for :class:`QueryAnswerer`: CPR (``ESC[6n``, ``ESC[?6n``), status
#: (``ESC[5n``), device attributes (``ESC[c``, ``ESC[0c``, ``ESC[>c``, ``ESC[>0c``), the text
#: area's size (``ESC[18t``), the colours (``OSC 10;?``, ``OSC 11;?``).
_QUERY = re.compile(rb"\x1b\[(\??6|5)n|\x1b\[(>?)0?c|\x1b\[18t|\x1b\](1[01]);\?(\x07|\x1b\\)")
#: The start of one of those, cut off by the end of a chunk.
_QUERY_START = re.compile(rb"\x1b(?:\[[>?0-9]*|\](?:1[01]?(?:;\??)?)?|\]1[01];\?\x1b)?\Z")


class QueryAnswerer:
    """Answers the same queries as :class:`TerminalResponder`, for output whose cursor
    something else knows exactly (the virtual screen of a program on the alternate screen):
    ``feed(data, cursor, size)`` finds the queries in ``data`` (one regular expression over
    it, a query cut between chunks included) and answers a cursor-position report with
    ``cursor`` (0-based x, y) and a size report with ``size`` (cols, rows). Not safe to share
    between threads."""

    __slots__ = ("_carry",)

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes, cursor: tuple[int, int], size: tuple[int, int]) -> bytes:
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if b"\x1b" not in data:
            return b""
        replies = []
        for m in _QUERY.finditer(data):
            if m.group(1) is not None:
                if m.group(1) == b"5":
                    replies.append(b"\x1b[0n")
                else:
                    replies.append(b"\x1b[%d;%dR" % (cursor[1] + 1, cursor[0] + 1))
            elif m.group(3) is not None:
                replies.append(b"\x1b]" + m.group(3) + b";" + _COLOURS[m.group(3)] + m.group(4))
            elif m.group().endswith(b"t"):
                replies.append(b"\x1b[8;%d;%dt" % (size[1], size[0]))
            else:
                replies.append(_SECONDARY_DA if m.group(2) else _PRIMARY_DA)
        # A query cut by the end of the chunk: its start, kept for the next one (the earliest
        # ESC that starts one: an OSC query's terminator is an ESC too).
        at = data.find(b"\x1b", max(0, len(data) - 8))
        while at >= 0:
            if _QUERY_START.match(data, at):
                self._carry = data[at:]
                break
            at = data.find(b"\x1b", at + 1)
        return b"".join(replies)
