"""A terminal emulator in memory: the screen a program's output draws, as xterm would show it.

:class:`VirtualScreen` is fed the same bytes as the line pipeline, in whatever chunks the PTY
reads return (a UTF-8 character or an escape sequence cut in two is handled whole), and keeps
the cells of the screen: ``snapshot()`` gives the rows as text and with SGR colours, the
cursor, whether the alternate screen is on, and ``seq``, a number that grows with every change;
``changes(since)`` gives only the rows that changed after a given ``seq``.

What it implements, xterm's way (and tmux's, which the oracle tests compare it with):

- text: autowrap with the pending-wrap state at the margin, wide characters in two cells (a wide
  character that does not fit wraps), zero-width characters joined to the cell before, insert
  mode, the DEC line-drawing set (``ESC ( 0``, SO/SI), ``REP``;
- the cursor: absolute and relative moves, origin mode, save and restore (``ESC 7``/``8``,
  ``CSI s``/``u``), visibility (``?25``), tab stops (``HT``, ``CHT``, ``CBT``, ``HTS``, ``TBC``);
- editing: erase in line and display, insert and delete characters and lines, erase
  characters, with the current background (as xterm and tmux do);
- scrolling: LF, IND, NEL and RI at the margins of the scroll region (DECSTBM), ``SU``/``SD``;
- the alternate screen: 1049 (saves and restores the cursor), 1047 and 47; the main screen
  comes back as it was;
- colours and attributes: SGR, 16, 256 and 24-bit colours, kept per cell.

Left out, on purpose: scrollback (lines scrolled off the top are gone; the line pipeline has
them), reflow on resize (rows are cut or padded; full-screen programs redraw on SIGWINCH),
left and right margins, double-width lines, answers to queries (``TerminalResponder`` does
that), titles and OSC strings (skipped, whatever their length).

Where xterm and tmux 3.3a differ, this follows xterm (and xterm.js, which draws the dashboard):
IL and DL move the cursor to the first column; writing over the right half of a wide character,
or deleting or inserting inside one, blanks the whole character; ``BS`` in the pending-wrap
state goes to the column before the last.

Not safe to share between threads; one screen per run of an agent.
"""
from __future__ import annotations

import codecs
import re
from itertools import groupby
from typing import Any, NamedTuple

from supervisor.ansi import (
    CONTROL_BUT_ESC,
    CSI_FINAL,
    CSI_INTERMEDIATES,
    CSI_PARAMS,
    ESC_FINAL_PLAIN,
    STRING_STOP,
    TEXT_RUN,
)
from supervisor.screen.grid import Row, blank_rows
from supervisor.sgr import SGRState
from supervisor.widths import NARROW_SEEN, all_narrow, char_width, known_width

__all__ = ["DEC_GRAPHICS", "Cursor", "ScreenLine", "VirtualScreen"]

#: The DEC special graphics set (``ESC ( 0``) as the characters a terminal draws for it.
DEC_GRAPHICS = dict(zip("`abcdefghijklmnopqrstuvwxyz{|}~", "◆▒␉␌␍␊°±␤␋┘┐┌└┼⎺⎻─⎼⎽├┤┴┬│≤≥π≠£·"))
_DEC_TABLE = str.maketrans(DEC_GRAPHICS)

#: One token of output: printable text (1); an SGR sequence's parameters and the text after it
#: (2, 3); a cursor position's row and column, the parameters of an SGR sequence after it and
#: the text after that (4-7); any other CSI sequence: parameters, intermediates, final byte
#: (8-10); a control character, CR LF together (11); any other escape but the string ones
#: (``ESC ]``, ``P``, ``X``, ``^``, ``_``): intermediates and final byte (12, 13). No match at
#: an ESC: a string, an unfinished sequence or a malformed one, for ``_escape``. A TUI's output
#: is mostly "move, colour, text": the fused tokens take them in one turn of the loop.
_TOKEN = re.compile(
    rf"({TEXT_RUN})"
    rf"|\x1b\[([0-9;]*)m({TEXT_RUN})?"
    rf"|\x1b\[([0-9]+);([0-9]+)H(?:\x1b\[([0-9;]*)m)?({TEXT_RUN})?"
    rf"|\x1b\[({CSI_PARAMS})({CSI_INTERMEDIATES})({CSI_FINAL})"
    rf"|(\r\n|{CONTROL_BUT_ESC})"
    rf"|\x1b({CSI_INTERMEDIATES})({ESC_FINAL_PLAIN})"
)
_PRIVATE = ("?", ">", "<", "=")
_CSI_PREFIX = re.compile(rf"\x1b\[{CSI_PARAMS}{CSI_INTERMEDIATES}\Z")
_ESC_PREFIX = re.compile(rf"\x1b{CSI_INTERMEDIATES}\Z")
#: Where an OSC, DCS, SOS, PM or APC string ends: BEL, or the ESC of ST (or of anything else).
_STRING_END = re.compile(STRING_STOP)
#: Longest unfinished CSI or escape kept for the next chunk; a longer one is dropped.
_CARRY_MAX = 256
#: How many ranges of moved rows are remembered for ``changes``.
_MOVES_MAX = 64

_new_decoder = codecs.getincrementaldecoder("utf-8")


class Cursor(NamedTuple):
    x: int
    y: int
    visible: bool


class ScreenLine(NamedTuple):
    """A line as the program printed it: rows ``first`` to ``last`` joined where they were
    soft-wrapped."""

    first: int
    last: int
    text: str


#: SGR state changes, remembered: "code before\0parameters" -> (code after, its background).
#: A TUI sets the same few colours over and over, and parsing them each time was the largest
#: cost of a redraw. The parsing itself is the line pipeline's (:class:`supervisor.sgr.SGRState`).
_SGR_AFTER: dict[str, tuple[str, str]] = {}
_SGR_MAX = 4096


def _sgr_after(code: str, params: str) -> tuple[str, str]:
    """The style code after ``ESC[<params>m`` from style ``code``, and its background alone
    (what erased cells get, as xterm erases)."""
    key = code + "\0" + params
    after = _SGR_AFTER.get(key)
    if after is None:
        style = SGRState()
        style.apply(code)  # a code is the SGR parameters that recreate its state
        style.apply(params)
        after = (style.code, style.bg)
        if len(_SGR_AFTER) >= _SGR_MAX:  # bound the memory
            _SGR_AFTER.clear()
        _SGR_AFTER[key] = after
    return after


class _Saved(NamedTuple):
    """What DECSC saves."""

    x: int
    y: int
    pending: bool
    code: str
    erase: str
    origin: bool
    charsets: tuple[str, str]
    shift: int


def _ints(params: str) -> list[int]:
    """CSI parameters as numbers; an empty or non-numeric one is 0 (sub-parameters dropped)."""
    out = []
    for part in params.split(";"):
        part = part.partition(":")[0]
        out.append(int(part) if part.isdigit() else 0)
    return out


def _arg(args: list[int], index: int = 0, default: int = 1) -> int:
    """The ``index``-th parameter, where 0 or a missing one means ``default``."""
    return (args[index] if index < len(args) else 0) or default


class VirtualScreen:
    """An in-memory terminal of ``cols`` x ``rows`` cells; see the module docstring.

    ``feed`` never raises on bad input: invalid UTF-8 becomes U+FFFD, unknown sequences are
    skipped. It costs time in proportion to the bytes fed; ``snapshot`` in proportion to the
    rows that changed since the last one.
    """

    def __init__(self, cols: int = 80, rows: int = 24) -> None:
        if cols < 1 or rows < 1:
            raise ValueError("a screen needs at least one column and one row")
        self._cols, self._rows = cols, rows
        self._seq = 0
        self._stamp = 1  # the seq that changes made during this feed get
        self._changed = False
        self._decode = _new_decoder(errors="replace").decode
        self._carry = ""
        self._in_string = False
        self._main = blank_rows(rows, cols, 0)
        self._moves: list[tuple[int, int, int]] = []  # (seq, top, bottom) of rows that moved
        self._moves_floor = 0  # changes() since before this seq cannot rely on _moves
        self._alt: list[Row] | None = None
        self._buf = self._main
        self._alternate = False
        self._reset_state()

    def _reset_state(self) -> None:
        self._x = self._y = 0
        self._pending = False  # at the margin: the next printable character wraps first
        self._autowrap = True
        self._origin = False
        self._insert = False
        self._cursor_visible = True
        self._app_cursor_keys = False
        self._bracketed_paste = False
        self._top, self._bottom = 0, self._rows - 1
        self._tabs = self._default_tabs(self._cols)
        self._code = ""  # the style new cells get (an SGR parameter string)
        self._erase = ""  # the style erased cells get: the background alone
        self._charsets = ("B", "B")
        self._shift = 0
        self._graphics = False
        self._last_char = ""
        self._saved: dict[bool, _Saved] = {}

    @staticmethod
    def _default_tabs(cols: int) -> bytearray:
        tabs = bytearray(cols)
        tabs[8::8] = b"\x01" * len(range(8, cols, 8))
        return tabs

    # --- the public face ----------------------------------------------------------------------

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def seq(self) -> int:
        """Grows by at least one with every change of what a snapshot would show."""
        return self._seq

    @property
    def alternate(self) -> bool:
        """Whether the program is on the alternate screen."""
        return self._alternate

    @property
    def cursor(self) -> Cursor:
        return Cursor(self._x, self._y, self._cursor_visible)

    def feed(self, data: bytes) -> None:
        """Apply the program's output ``data`` (any chunk of the byte stream)."""
        text = self._decode(data)
        if self._carry:
            text = self._carry + text
            self._carry = ""
        if text:
            self._stamp = self._seq + 1
            self._parse(text)
            if self._changed:
                self._seq = self._stamp
                self._changed = False

    def resize(self, cols: int, rows: int) -> None:
        """The PTY's size changed. Rows are cut or padded, not reflowed; when the screen gets
        shorter, rows below the cursor go first, then rows from the top (as in tmux)."""
        if cols < 1 or rows < 1:
            raise ValueError("a screen needs at least one column and one row")
        if (cols, rows) == (self._cols, self._rows):
            return
        self._stamp = self._seq + 1
        old_rows = self._rows
        for buf in (self._main, self._alt):
            if buf is None:
                continue
            active = buf is self._buf
            saved = self._saved.get(buf is self._alt)
            cursor_y = self._y if active else (saved.y if saved else old_rows - 1)
            removed_top = 0
            if rows < old_rows:
                needed = old_rows - rows
                below = min(max(old_rows - 1 - cursor_y, 0), needed)
                del buf[old_rows - below:]
                removed_top = needed - below
                del buf[:removed_top]
            else:
                buf.extend(blank_rows(rows - old_rows, cols, self._stamp))
            for row in buf:
                row.resize(cols)
                row.seq = self._stamp
            if active:
                self._y = min(max(self._y - removed_top, 0), rows - 1)
            if saved is not None:
                self._saved[buf is self._alt] = saved._replace(
                    x=min(saved.x, cols - 1), y=min(max(saved.y - removed_top, 0), rows - 1))
        tabs = self._default_tabs(cols)
        keep = min(cols, self._cols)
        tabs[:keep] = self._tabs[:keep]
        self._tabs = tabs
        self._cols, self._rows = cols, rows
        self._x = min(self._x, cols - 1)
        self._pending = False
        self._top, self._bottom = 0, rows - 1
        self._seq = self._stamp

    def snapshot(self) -> dict[str, Any]:
        """The whole screen: ``{cols, rows, cursor: {x, y, visible}, alternate, seq, text,
        ansi, wrapped, modes}``; ``text`` and ``ansi`` have one string per row (trailing blanks
        left out), ``wrapped`` one flag per row (its text goes on in the next row)."""
        rendered = [row.render() for row in self._buf]
        return {
            "cols": self._cols,
            "rows": self._rows,
            "cursor": self._cursor_dict(),
            "alternate": self._alternate,
            "seq": self._seq,
            "text": [text for text, _ in rendered],
            "ansi": [ansi for _, ansi in rendered],
            "wrapped": [row.wrapped for row in self._buf],
            "modes": {"app_cursor_keys": self._app_cursor_keys, "bracketed_paste": self._bracketed_paste},
        }

    def changes(self, since: int) -> dict[str, Any]:
        """What changed after ``seq`` ``since``: ``{seq, cols, rows, cursor, alternate, modes,
        changed: [{row, text, ansi, wrapped}]}``. Applied in order to a snapshot taken at
        ``since``, it gives the current screen (a resize or a switch of screens lists every row)."""
        moved = bytearray(self._rows)
        if since < self._moves_floor:
            moved = bytearray(b"\x01" * self._rows)
        else:
            for stamp, top, bottom in reversed(self._moves):
                if stamp <= since:
                    break
                moved[top:bottom + 1] = b"\x01" * (bottom + 1 - top)
        changed = []
        for index, row in enumerate(self._buf):
            if row.seq > since or moved[index]:
                text, ansi = row.render()
                changed.append({"row": index, "text": text, "ansi": ansi, "wrapped": row.wrapped})
        return {
            "seq": self._seq,
            "cols": self._cols,
            "rows": self._rows,
            "cursor": self._cursor_dict(),
            "alternate": self._alternate,
            "modes": {"app_cursor_keys": self._app_cursor_keys, "bracketed_paste": self._bracketed_paste},
            "changed": changed,
        }

    def lines(self) -> list[ScreenLine]:
        """The screen's text as the lines the program printed: soft-wrapped rows joined (a URL
        that the terminal wrapped over four rows comes back whole)."""
        out: list[ScreenLine] = []
        parts: list[str] = []
        first = 0
        for index, row in enumerate(self._buf):
            if not parts:
                first = index
            if row.wrapped and index < self._rows - 1:
                parts.append("".join(row.chars))
                continue
            parts.append(row.render()[0])
            out.append(ScreenLine(first, index, "".join(parts)))
            parts = []
        return out

    def _cursor_dict(self) -> dict[str, Any]:
        return {"x": self._x, "y": self._y, "visible": self._cursor_visible}

    # --- parsing --------------------------------------------------------------------------------

    def _parse(self, text: str) -> None:
        """Apply ``text`` token by token. The common tokens (short text, SGR, cursor position,
        CR LF) are handled right here: this loop is where a busy TUI spends its time."""
        pos, end = 0, len(text)
        if self._in_string:  # inside an OSC/DCS/APC string that began in an earlier chunk
            m = _STRING_END.search(text)
            if m is None:
                return
            self._in_string = False
            pos = m.end() if m.group() == "\x07" else m.start()
        match = _TOKEN.match
        sgr_after = _SGR_AFTER.get
        cols, rows = self._cols, self._rows  # a resize never happens in the middle of a feed
        while pos < end:
            m = match(text, pos)
            if m is None:
                pos = self._escape(text, pos)
                if pos < 0:
                    return
                continue
            pos = m.end()
            kind: int = m.lastindex  # type: ignore[assignment]  # every alternative has a group
            if kind == 1:
                chunk = m.group(1)
            elif kind <= 3:  # SGR, and the text after it
                params = m.group(2)
                code = self._code
                after = sgr_after(code + "\0" + params)
                self._code, self._erase = after if after is not None else _sgr_after(code, params)
                if kind == 2:
                    continue
                chunk = m.group(3)
            elif kind <= 7:  # CUP, maybe an SGR after it, and maybe text after that
                if self._origin:
                    self._cup([int(m.group(4)), int(m.group(5))])
                else:
                    y, x = int(m.group(4)) - 1, int(m.group(5)) - 1
                    self._x = x if 0 <= x < cols else (cols - 1 if x >= cols else 0)
                    self._y = y if 0 <= y < rows else (rows - 1 if y >= rows else 0)
                    self._pending = False
                    self._changed = True
                if kind == 5:
                    continue
                params = m.group(6)
                if params is not None:
                    code = self._code
                    after = sgr_after(code + "\0" + params)
                    self._code, self._erase = after if after is not None else _sgr_after(code, params)
                if kind == 6:
                    continue
                chunk = m.group(7)
            elif kind == 10:
                params, inter, final = m.group(8, 9, 10)
                if inter or params[:1] in _PRIVATE:
                    self._csi(params, inter, final)
                elif final == "m":
                    self._code, self._erase = sgr_after(self._code + "\0" + params) or _sgr_after(self._code, params)
                elif final == "H" and not self._origin:
                    row, _, col = params.partition(";")
                    y = int(row) - 1 if row.isdigit() and row != "0" else 0
                    x = int(col) - 1 if col.isdigit() and col != "0" else 0
                    self._x = x if x < cols else cols - 1
                    self._y = y if y < rows else rows - 1
                    self._pending = False
                    self._changed = True
                else:
                    self._csi(params, inter, final)
                continue
            elif kind == 11:
                self._control(m.group(11))
                continue
            else:
                self._esc(m.group(12), m.group(13))
                continue
            # Text: narrow characters that fit the row are written here; the rest by _print.
            x = self._x
            if (x + len(chunk) < cols and not self._pending and not self._graphics
                    and not self._insert and (chunk.isascii() or not chunk.translate(NARROW_SEEN))):
                self._buf[self._y].put(x, chunk, self._code, self._stamp)
                self._x = x + len(chunk)
                self._last_char = chunk[-1]
                self._changed = True
            else:
                self._print(chunk)

    def _escape(self, text: str, start: int) -> int:
        """An ESC that is no complete token: skip a string sequence, keep an unfinished one for
        the next chunk, drop a malformed one. Returns where to go on, or -1 to stop here."""
        end = len(text)
        if start + 1 == end:
            self._carry = "\x1b"
            return -1
        kind = text[start + 1]
        if kind in "]PX^_":
            m = _STRING_END.search(text, start + 2)
            if m is None:
                self._in_string = True
                return -1
            return m.end() if m.group() == "\x07" else m.start()
        if (_CSI_PREFIX if kind == "[" else _ESC_PREFIX).match(text, start):
            if end - start <= _CARRY_MAX:
                self._carry = text[start:]
            return -1
        return start + (2 if kind == "[" else 1)  # a control inside: drop the introducer

    # --- printing ---------------------------------------------------------------------------

    def _print(self, text: str) -> None:
        if self._graphics:
            text = text.translate(_DEC_TABLE)
        self._changed = True
        if all_narrow(text):
            self._print_narrow(text)
        else:
            self._print_mixed(text)
        self._last_char = text[-1]

    def _wrap(self) -> None:
        """The pending wrap happens: the row is soft-wrapped into the next one."""
        row = self._buf[self._y]
        row.wrapped = True
        row.seq = self._stamp
        self._pending = False
        self._x = 0
        self._linefeed()

    def _print_narrow(self, text: str) -> None:
        cols, stamp, code = self._cols, self._stamp, self._code
        while text:
            if self._pending:
                if self._autowrap:
                    self._wrap()
                else:
                    self._pending = False
            x = self._x
            room = cols - x
            if len(text) > room:
                part, text = text[:room], text[room:]
            else:
                part, text = text, ""
            row = self._buf[self._y]
            if self._insert:
                row.insert(x, len(part), "", stamp)
            row.put(x, part, code, stamp)
            x += len(part)
            if x >= cols:
                self._x = cols - 1
                if self._autowrap:
                    self._pending = True
                elif text:  # no autowrap: what does not fit lands in the last column
                    row.put(cols - 1, text[-1], code, stamp)
                    text = ""
            else:
                self._x = x

    def _print_mixed(self, text: str) -> None:
        """Text with wide or zero-width characters: split into runs of one width (in C, by
        the widths known so far); runs of narrow characters still go in whole."""
        for width, run in groupby(text, known_width):
            if width == 1:
                self._print_narrow("".join(run))
                continue
            for ch in run:
                w = char_width(ch) if width is None else width
                if w == 2:
                    self._print_wide(ch)
                elif w == 0:
                    self._combine(ch)
                else:
                    self._print_narrow(ch)

    def _print_wide(self, ch: str) -> None:
        cols = self._cols
        if cols < 2:
            self._print_narrow(ch)
            return
        if self._pending:
            if self._autowrap:
                self._wrap()
            else:
                self._pending = False
        if self._x == cols - 1:  # it does not fit: it goes to the next row
            if not self._autowrap:
                return
            self._wrap()
        row, x = self._buf[self._y], self._x
        if self._insert:
            row.insert(x, 2, "", self._stamp)
        row.put_wide(x, ch, self._code, self._stamp)
        if x + 2 >= cols:
            self._x = cols - 1
            self._pending = self._autowrap
        else:
            self._x = x + 2

    def _combine(self, mark: str) -> None:
        """A zero-width character joins the cell before the cursor (the cursor's own at the
        margin, where it has not moved on yet)."""
        x = self._x if self._pending else self._x - 1
        if x >= 0:
            self._buf[self._y].combine(x, mark, self._stamp)

    # --- control characters -------------------------------------------------------------------

    def _control(self, ch: str) -> None:
        if ch == "\r\n":
            self._pending = False
            self._x = 0
            self._linefeed()
        elif ch == "\n" or ch == "\x0b" or ch == "\x0c":
            self._pending = False
            self._linefeed()
        elif ch == "\r":
            self._pending = False
            self._x = 0
        elif ch == "\x08":
            self._pending = False
            self._x = max(self._x - 1, 0)
        elif ch == "\t":
            self._pending = False
            self._tab(1)
        elif ch == "\x0e" or ch == "\x0f":
            self._shift = 1 if ch == "\x0e" else 0
            self._graphics = self._charsets[self._shift] == "0"
            return
        else:
            return  # BEL and the rest print nothing
        self._changed = True

    def _linefeed(self) -> None:
        if self._y == self._bottom:
            self._scroll_up(1)
        elif self._y < self._rows - 1:
            self._y += 1

    def _reverse_index(self) -> None:
        if self._y == self._top:
            self._scroll_down(1)
        elif self._y > 0:
            self._y -= 1

    def _tab(self, n: int) -> None:
        tabs, x, last = self._tabs, self._x, self._cols - 1
        for _ in range(n):
            stop = tabs.find(1, x + 1)
            x = last if stop < 0 else stop
            if x == last:
                break
        self._x = x

    def _back_tab(self, n: int) -> None:
        tabs, x = self._tabs, self._x
        for _ in range(n):
            stop = tabs.rfind(1, 0, x)
            x = max(stop, 0)
            if x == 0:
                break
        self._x = x

    # --- scrolling and lines ------------------------------------------------------------------

    def _scroll_up(self, n: int, top: int | None = None) -> None:
        """Rows ``top``..bottom margin move up ``n``; blank rows come in at the bottom."""
        top = self._top if top is None else top
        bottom = self._bottom
        n = min(n, bottom - top + 1)
        buf, stamp = self._buf, self._stamp
        if n == 1:  # a line of output at the bottom: the common case, without copying the list
            row = buf.pop(top)
            row.clear(self._erase, stamp)
            buf.insert(bottom, row)
        else:
            fresh = blank_rows(n, self._cols, stamp, self._erase)
            buf[top:bottom + 1] = buf[top + n:bottom + 1] + fresh
        self._moved(top, bottom)

    def _scroll_down(self, n: int, top: int | None = None) -> None:
        """Rows ``top``..bottom margin move down ``n``; blank rows come in at ``top``."""
        top = self._top if top is None else top
        bottom = self._bottom
        n = min(n, bottom - top + 1)
        buf, stamp = self._buf, self._stamp
        fresh = blank_rows(n, self._cols, stamp, self._erase)
        buf[top:bottom + 1] = fresh + buf[top:bottom + 1 - n]
        self._moved(top, bottom)

    def _moved(self, top: int, bottom: int) -> None:
        """Rows ``top``..``bottom`` moved (their contents did not change, so their own ``seq``
        stays): remembered as a range, which is cheaper than stamping each row on every
        scroll. The oldest ranges are forgotten; ``changes`` before them lists every row."""
        self._changed = True
        move = (self._stamp, top, bottom)
        moves = self._moves
        if moves and moves[-1] == move:
            return
        moves.append(move)
        if len(moves) > _MOVES_MAX:
            self._moves_floor = moves.pop(0)[0]

    # --- escape sequences ---------------------------------------------------------------------

    def _esc(self, inter: str, final: str) -> None:
        if inter:
            if inter in ("(", ")"):  # designate G0 or G1: the line-drawing set, or ASCII
                charsets = list(self._charsets)
                charsets[0 if inter == "(" else 1] = "0" if final == "0" else "B"
                self._charsets = (charsets[0], charsets[1])
                self._graphics = self._charsets[self._shift] == "0"
            elif inter == "#" and final == "8":
                self._align()
            return
        if final == "D":
            self._pending = False
            self._linefeed()
        elif final == "E":
            self._pending = False
            self._x = 0
            self._linefeed()
        elif final == "M":
            self._pending = False
            self._reverse_index()
        elif final == "7":
            self._save_cursor()
        elif final == "8":
            self._restore_cursor()
        elif final == "H":
            self._tabs[self._x] = 1
        elif final == "c":
            self._full_reset()
        else:
            return  # keypad modes, ST and the like: nothing on screen
        self._changed = True

    def _csi(self, params: str, inter: str, final: str) -> None:
        if inter:
            if inter == "!" and final == "p":
                self._soft_reset()
            return  # cursor style and other requests: nothing on screen
        if params[:1] == "?":
            if final in "hl":
                self._private_modes(_ints(params[1:]), final == "h")
            return
        if params[:1] in (">", "<", "="):
            return
        if final == "m":
            self._code, self._erase = _sgr_after(self._code, params)
            return
        args = _ints(params) if params else []
        handler = _CSI_HANDLERS.get(final)
        if handler is not None:
            handler(self, args)

    # cursor moves

    def _goto(self, x: int, y: int) -> None:
        """Move to column ``x`` and screen row ``y`` (0-based), clamped to the screen."""
        self._x = min(max(x, 0), self._cols - 1)
        self._y = min(max(y, 0), self._rows - 1)
        self._pending = False
        self._changed = True

    def _cup(self, args: list[int]) -> None:
        row, col = _arg(args, 0) - 1, _arg(args, 1) - 1
        if self._origin:
            self._goto(col, min(self._top + row, self._bottom))
        else:
            self._goto(col, row)

    def _vpa(self, args: list[int]) -> None:
        row = _arg(args) - 1
        if self._origin:
            self._goto(self._x, min(self._top + row, self._bottom))
        else:
            self._goto(self._x, row)

    def _up(self, args: list[int], to_first_column: bool = False) -> None:
        limit = self._top if self._y >= self._top else 0
        self._goto(0 if to_first_column else self._x, max(self._y - _arg(args), limit))

    def _down(self, args: list[int], to_first_column: bool = False) -> None:
        limit = self._bottom if self._y <= self._bottom else self._rows - 1
        self._goto(0 if to_first_column else self._x, min(self._y + _arg(args), limit))

    # editing

    def _erase_line(self, args: list[int]) -> None:
        mode = args[0] if args else 0
        row, code = self._buf[self._y], self._erase
        if mode == 0:
            row.erase(self._x, self._cols, code, self._stamp)
        elif mode == 1:
            row.erase(0, self._x + 1, code, self._stamp)
        elif mode == 2:
            row.erase(0, self._cols, code, self._stamp)
        self._pending = False
        self._changed = True

    def _erase_display(self, args: list[int]) -> None:
        mode = args[0] if args else 0
        code, stamp, cols = self._erase, self._stamp, self._cols
        if mode == 0:
            self._buf[self._y].erase(self._x, cols, code, stamp)
            rows = range(self._y + 1, self._rows)
        elif mode == 1:
            self._buf[self._y].erase(0, self._x + 1, code, stamp)
            rows = range(0, self._y)
        elif mode == 2:
            rows = range(0, self._rows)
        else:
            return  # 3: the scrollback, which there is none of
        for i in rows:
            self._buf[i].erase(0, cols, code, stamp)
        self._pending = False
        self._changed = True

    def _insert_lines(self, args: list[int]) -> None:
        if self._top <= self._y <= self._bottom:
            self._scroll_down(_arg(args), top=self._y)
            self._goto(0, self._y)

    def _delete_lines(self, args: list[int]) -> None:
        if self._top <= self._y <= self._bottom:
            self._scroll_up(_arg(args), top=self._y)
            self._goto(0, self._y)

    def _edit_row(self, op: str, args: list[int]) -> None:
        row, n, code = self._buf[self._y], _arg(args), self._erase
        if op == "@":
            row.insert(self._x, n, code, self._stamp)
        elif op == "P":
            row.delete(self._x, n, code, self._stamp)
        else:
            row.erase(self._x, self._x + n, code, self._stamp)
        self._pending = False
        self._changed = True

    def _repeat(self, args: list[int]) -> None:
        if self._last_char:
            self._print(self._last_char * min(_arg(args), self._cols * self._rows))

    def _set_margins(self, args: list[int]) -> None:
        top = _arg(args, 0) - 1
        bottom = _arg(args, 1, self._rows) - 1
        bottom = min(bottom, self._rows - 1)
        if top < bottom:
            self._top, self._bottom = top, bottom
            self._goto(0, top if self._origin else 0)

    def _clear_tabs(self, args: list[int]) -> None:
        mode = args[0] if args else 0
        if mode == 0:
            self._tabs[self._x] = 0
        elif mode == 3:
            self._tabs = bytearray(self._cols)

    def _ansi_modes(self, args: list[int], on: bool) -> None:
        if 4 in args:
            self._insert = on

    def _private_modes(self, modes: list[int], on: bool) -> None:
        for mode in modes:
            if mode in (1049, 1047, 47):
                self._switch_screen(on, save_cursor=mode == 1049)
            elif mode == 25:
                self._cursor_visible = on
            elif mode == 7:
                self._autowrap = on
                self._pending = False
            elif mode == 6:
                self._origin = on
                self._goto(0, self._top if on else 0)
            elif mode == 1048:
                if on:
                    self._save_cursor()
                else:
                    self._restore_cursor()
            elif mode == 1:
                self._app_cursor_keys = on
            elif mode == 2004:
                self._bracketed_paste = on
            else:
                continue
            self._changed = True

    # screens, saving and resetting

    def _switch_screen(self, on: bool, save_cursor: bool) -> None:
        if on == self._alternate:
            return
        if on:
            if save_cursor:
                self._save_cursor()
            self._alt = blank_rows(self._rows, self._cols, self._stamp, self._erase)
            self._buf = self._alt
        else:
            self._buf = self._main
            self._alt = None
        self._alternate = on
        for row in self._buf:
            row.seq = self._stamp
        if not on and save_cursor:
            self._restore_cursor()
        self._pending = False

    def _save_cursor(self) -> None:
        self._saved[self._alternate] = _Saved(self._x, self._y, self._pending, self._code, self._erase,
                                              self._origin, self._charsets, self._shift)

    def _restore_cursor(self) -> None:
        saved = self._saved.get(self._alternate)
        if saved is None:
            self._goto(0, 0)
            self._code = self._erase = ""
            self._origin = False
            return
        self._goto(saved.x, saved.y)
        self._pending = saved.pending
        self._code, self._erase = saved.code, saved.erase
        self._origin = saved.origin
        self._charsets, self._shift = saved.charsets, saved.shift
        self._graphics = self._charsets[self._shift] == "0"

    def _soft_reset(self) -> None:
        self._insert = self._origin = False
        self._autowrap = self._cursor_visible = True
        self._top, self._bottom = 0, self._rows - 1
        self._code = self._erase = ""
        self._charsets, self._shift, self._graphics = ("B", "B"), 0, False
        self._saved.pop(self._alternate, None)
        self._changed = True

    def _full_reset(self) -> None:
        self._main = blank_rows(self._rows, self._cols, self._stamp)
        self._alt = None
        self._buf = self._main
        self._alternate = False
        self._reset_state()

    def _align(self) -> None:
        """DECALN: the screen filled with ``E``, margins reset, cursor home."""
        for row in self._buf:
            row.put(0, "E" * self._cols, "", self._stamp)
            row.wrapped = False
        self._top, self._bottom = 0, self._rows - 1
        self._goto(0, 0)


def _columns(screen: VirtualScreen, x: int) -> None:
    screen._goto(x, screen._y)


#: CSI final byte -> what it does (parameters already numbers).
_CSI_HANDLERS: dict[str, Any] = {
    "A": lambda s, a: s._up(a),
    "B": lambda s, a: s._down(a),
    "e": lambda s, a: s._down(a),
    "C": lambda s, a: _columns(s, s._x + _arg(a)),
    "a": lambda s, a: _columns(s, s._x + _arg(a)),
    "D": lambda s, a: _columns(s, s._x - _arg(a)),
    "E": lambda s, a: s._down(a, to_first_column=True),
    "F": lambda s, a: s._up(a, to_first_column=True),
    "G": lambda s, a: _columns(s, _arg(a) - 1),
    "`": lambda s, a: _columns(s, _arg(a) - 1),
    "H": VirtualScreen._cup,
    "f": VirtualScreen._cup,
    "d": VirtualScreen._vpa,
    "I": lambda s, a: (s._goto(s._x, s._y), s._tab(_arg(a))),
    "Z": lambda s, a: (s._goto(s._x, s._y), s._back_tab(_arg(a))),
    "K": VirtualScreen._erase_line,
    "J": VirtualScreen._erase_display,
    "@": lambda s, a: s._edit_row("@", a),
    "P": lambda s, a: s._edit_row("P", a),
    "X": lambda s, a: s._edit_row("X", a),
    "L": VirtualScreen._insert_lines,
    "M": VirtualScreen._delete_lines,
    "S": lambda s, a: s._scroll_up(_arg(a)),
    "T": lambda s, a: s._scroll_down(_arg(a)) if len(a) <= 1 else None,
    "b": VirtualScreen._repeat,
    "r": VirtualScreen._set_margins,
    "g": VirtualScreen._clear_tabs,
    "h": lambda s, a: s._ansi_modes(a, True),
    "l": lambda s, a: s._ansi_modes(a, False),
    "s": lambda s, a: s._save_cursor() if not a else None,
    "u": lambda s, a: s._restore_cursor() if not a else None,
}
