"""Raw terminal output bytes -> the lines a person saw on screen (pure: no I/O, no PTY).

A :class:`LineSplitter` takes the bytes a program wrote to its pseudo-terminal, in whatever
chunks the reads return, and gives back :class:`Line` objects:

- ``\\r\\n`` and ``\\n`` end a line; no line ever carries a ``\\r``.
- Redraws are applied the way a terminal applies them, on a one-row screen: a bare ``\\r``, ``\\b``,
  ``ESC[nG``/``C``/``D`` move the cursor, later text overwrites cells, ``ESC[K`` (0, 1, 2),
  ``ESC[nX``/``P``/``@`` erase, delete and insert. ``"50%\\r100%\\n"`` gives ``"100%"``. Each cell
  keeps the colour it was drawn with; a redrawn line is rendered again with one SGR sequence per
  change of colour and a reset at the end.
- A line that needed no redraw keeps its text exactly as printed, escapes included: the fast
  path, which is nearly all output. ``plain`` is ``text`` without escapes or controls (the same
  object when there were none).
- A line whose content was drawn and then wiped out (a spinner: ``⠙ESC[1GESC[0K``) is dropped
  and gives up its line number; an empty line that nothing was drawn on is kept as ``""``.
- A line longer than ``max_line_length`` is cut into pieces of that many characters (characters
  of the raw text for a line kept as printed, screen cells for a redrawn one), each a final
  ``Line`` with its own number; the later ones have ``continuation=True``. A cut never splits an
  escape sequence. Memory held for a pending line stays near ``max_line_length`` whatever the
  program does.

Limits, on purpose. This is not a terminal emulator: there is only the current row.

- A move to another row (``ESC[row;colH``, ``ESC[H``, ``ESC[nd``, ``ESC[nA``/``B``/``E``/``F``,
  ``ESC M``/``D``/``E``/``8``, ``ESC[u``, switching to or from the alternate screen) ends the
  current line, which is emitted if it has visible content, and later text starts a new one at
  that column. So the words a full-screen program draws still come out as lines ("OpenAI Codex"
  from its welcome box), in drawing order, once per redraw, without layout. Moves to the row the
  cursor is known to be on (the row of the last absolute move, plus newlines since) stay on the
  line and only move the column, so one row drawn in pieces comes out as one line. Text already
  emitted is never taken back: a program that moves up to redraw earlier lines (``ink``, ``npm``
  progress trees) repeats them.
- Colour state starts afresh with every redrawn line (a line kept as printed carries whatever
  escapes it had); cut pieces after the first do not repeat the colour that was active.
- Every code point is one cell (wide and combining characters are not measured); a tab in a
  redrawn line moves to the next multiple of 8 and becomes spaces.

Not safe to share between threads; one splitter per run of an agent.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from .ansi import (
    ALT_SCREEN_MODES,
    ANY_CONTROL,
    CSI_FINAL,
    CSI_INTERMEDIATES,
    CSI_PARAMS,
    ESC_FINAL,
    ESCAPE_RE,
    OSC,
    STRING,
    UNFINISHED,
    strip_ansi,
)
from .sgr import SGRState

__all__ = ["Line", "LineSplitter"]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of output as a person saw it.

    ``text`` keeps SGR colour sequences and never contains ``\\r`` or ``\\n``; ``plain`` is what
    extractors match. A ``partial`` line has no newline yet: a later line with the same
    ``line_num`` (partial or final) replaces it. ``continuation`` marks the second and later
    pieces of a line cut at ``max_line_length``.
    """

    text: str
    plain: str
    line_num: int
    partial: bool = False
    continuation: bool = False


#: How far back from the end of a chunk an unfinished escape sequence is looked for and held
#: until the next chunk; a longer one (a huge OSC title) is let through as it is.
_CARRY_MAX = 4096
_TAB = 8

#: C0 controls other than TAB, LF and CR, and DEL. A chunk without any (and without a bare CR)
#: has nothing to render or strip, so every line in it is emitted as-is.
_C0 = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])

#: Escapes after which a line cannot be kept as printed: cursor moves, erasures, insertions,
#: deletions, cursor restore, the alternate screen, reset.
_REDRAW_ESC = re.compile(
    rf"\x1b(?:\[{CSI_PARAMS}{CSI_INTERMEDIATES}[@-HJKPXadfu`]"
    rf"|\[\?(?:[0-9;]*;)?(?:{'|'.join(ALT_SCREEN_MODES)})(?:;[0-9;]*)?[hl]"
    r"|[78DEMc])"
)

#: A sequence that the next chunk may complete, from its ESC to the end of the text.
_UNFINISHED = re.compile(UNFINISHED)

#: What the renderer reads: CSI with parameters (1), intermediates (2) and final byte (3); OSC and
#: other strings (ignored); any other escape (4; empty for a lone ESC); single controls.
_TOKEN = re.compile(
    rf"\x1b\[({CSI_PARAMS})({CSI_INTERMEDIATES})({CSI_FINAL})"
    rf"|{OSC}|{STRING}"
    rf"|\x1b({CSI_INTERMEDIATES}{ESC_FINAL})?|{ANY_CONTROL}"
)

_ALT_SCREEN = frozenset(ALT_SCREEN_MODES)

_new_decoder = codecs.getincrementaldecoder("utf-8")


def _needs_render(seg: str) -> bool:
    """Whether ``seg`` moves the cursor or erases, so it cannot be kept as printed."""
    return (
        "\r" in seg
        or "\b" in seg
        or ("\x1b" in seg and _REDRAW_ESC.search(seg) is not None)
    )


def _has_control(data: bytes) -> bool:
    """Whether ``data`` holds a control character other than TAB, LF and CR."""
    return len(data.translate(None, _C0)) != len(data)


def _safe_cut(text: str, limit: int) -> int:
    """Where to cut ``text`` at most ``limit`` characters in without splitting an escape."""
    i = text.rfind("\x1b", max(0, limit - _CARRY_MAX), limit)
    if i > 0:
        m = ESCAPE_RE.match(text, i)
        if m is not None and m.end() > limit:
            return i
    return limit


def _number(params: str, index: int, default: int) -> int:
    """The ``index``-th numeric CSI parameter; empty, missing or 0 (for moves) means default."""
    parts = params.split(";")
    if index < len(parts):
        part = parts[index]
        if part.isdigit():
            return int(part) or default
    return default


def _sgr(before: str, after: str) -> str:
    """The sequence that switches from style ``before`` to style ``after``."""
    if not after:
        return "\x1b[0m"
    return f"\x1b[0;{after}m" if before else f"\x1b[{after}m"


class _Row:
    """The row being drawn: one character and one style code per cell (``""`` = blank cell).

    ``origin`` is the screen column of cell 0, so absolute column moves land right on a row
    that a full-screen program started drawing mid-screen.
    """

    __slots__ = (
        "chars", "col", "keep_blank", "limit", "origin", "printed", "style", "styled", "styles",
    )

    def __init__(self, limit: int, origin: int = 0, style: SGRState | None = None,
                 keep_blank: bool = True) -> None:
        self.chars: list[str] = []
        self.styles: list[str] = []
        self.col = 0
        self.origin = origin
        self.limit = limit
        self.style = style if style is not None else SGRState()
        self.printed = False  # something was drawn: if it is all gone, the line was erased
        self.styled = False  # some cell has a colour: rendering needs SGR sequences
        # An empty row that a newline ends is a blank line, unless it only exists because a
        # cursor move started it.
        self.keep_blank = keep_blank

    def write(self, text: str) -> None:
        chars, styles, col, n = self.chars, self.styles, self.col, len(text)
        if col > len(chars):
            pad = col - len(chars)
            chars.extend([""] * pad)
            styles.extend([""] * pad)
        code = self.style.code
        chars[col:col + n] = text
        styles[col:col + n] = [code] * n
        self.col = col + n
        self.printed = True
        if code:
            self.styled = True

    def move(self, col: int) -> None:
        self.col = min(max(col, 0), self.limit)

    def move_abs(self, screen_col: int) -> None:
        """Move to a screen column; one left of ``origin`` grows the row to the left."""
        if screen_col < self.origin:
            grow = min(self.origin - screen_col, self.limit)
            self.chars[0:0] = [""] * grow
            self.styles[0:0] = [""] * grow
            self.col += grow
            self.origin -= grow
            self.truncate()
        self.move(screen_col - self.origin)

    def tab(self) -> None:
        screen_col = self.origin + self.col
        self.move(screen_col + _TAB - screen_col % _TAB - self.origin)

    def erase(self, mode: int) -> None:
        """``ESC[K``: 0 from the cursor to the end, 1 from the start to the cursor, 2 all."""
        if mode == 0:
            del self.chars[self.col:], self.styles[self.col:]
        elif mode == 1:
            self.blank(0, self.col + 1)
        elif mode == 2:
            self.chars.clear()
            self.styles.clear()

    def blank(self, start: int, stop: int) -> None:
        stop = min(stop, len(self.chars))
        if stop > start:
            self.chars[start:stop] = [""] * (stop - start)
            self.styles[start:stop] = [""] * (stop - start)

    def delete(self, n: int) -> None:
        del self.chars[self.col:self.col + n], self.styles[self.col:self.col + n]

    def insert(self, n: int) -> None:
        if self.col < len(self.chars):
            n = min(n, self.limit)
            self.chars[self.col:self.col] = [""] * n
            self.styles[self.col:self.col] = [""] * n
            self.truncate()

    def truncate(self) -> None:
        """Cells pushed past the last column fall off, as at a terminal's right margin."""
        del self.chars[self.limit:], self.styles[self.limit:]

    def shift(self, n: int) -> None:
        """Drop the first ``n`` cells: they were emitted as a cut piece."""
        del self.chars[:n], self.styles[:n]
        self.col = max(0, self.col - n)
        # The rest is a new screen row, as if the terminal had wrapped: CR and ESC[1G go to
        # its first cell.
        self.origin = 0

    def render(self, stop: int | None = None) -> tuple[str, str]:
        """``(text, plain)`` of the first ``stop`` cells, trailing blank cells left out."""
        chars = self.chars if stop is None else self.chars[:stop]
        end = len(chars)
        while end and not chars[end - 1]:
            end -= 1
        cells = [c or " " for c in chars[:end]]
        plain = "".join(cells)
        if not self.styled:
            return plain, plain
        parts: list[str] = []
        current = ""
        for cell, code in zip(cells, self.styles):
            if code != current:
                parts.append(_sgr(current, code))
                current = code
            parts.append(cell)
        if current:
            parts.append("\x1b[0m")
        return "".join(parts), plain


class LineSplitter:
    """Turns one run's output bytes into :class:`Line` objects; see the module docstring.

    ``feed`` never raises on bad input: invalid UTF-8 becomes U+FFFD, and a character or an
    escape sequence split across two chunks is handled whole.
    """

    __slots__ = (
        "_carry",
        "_cont",
        "_count",
        "_decode_bytes",
        "_decoder",
        "_max",
        "_raw",
        "_raw_len",
        "_row",
        "_screen_row",
        "_seen",
        "_shown",
        "_version",
    )

    def __init__(self, max_line_length: int = 65536) -> None:
        if max_line_length < 1:
            raise ValueError("max_line_length must be at least 1")
        self._max = max_line_length
        self._decoder = _new_decoder(errors="replace")
        self._decode_bytes = self._decoder.decode
        self._carry = ""  # a trailing CR or unfinished escape, held for the next chunk
        # The pending line is either raw text that needs no rendering yet (_raw) or a row being
        # rendered (_row); never both.
        self._raw: list[str] = []
        self._raw_len = 0
        self._row: _Row | None = None
        self._cont = False  # the pending line continues a piece already cut and emitted
        self._count = 0
        self._screen_row: int | None = None  # row of the last absolute cursor move, if known
        self._version = 0  # bumped whenever the pending line may have changed
        self._seen = 0  # _version at the last partial() call
        self._shown: tuple[int, str] | None = None  # the last partial line handed out

    @property
    def lines_emitted(self) -> int:
        """Number of final lines so far (cut pieces count one each)."""
        return self._count

    def feed(self, data: bytes) -> list[Line]:
        """Complete lines in ``data`` (and before it), in order; all with ``partial=False``."""
        text = self._decode(data)
        if not text:
            return []
        self._version += 1
        out: list[Line] = []
        # Cheapest test first: C-speed scans of the whole chunk, so that ordinary output never
        # reaches a regular expression.
        if self._row is not None:
            self._feed_text(text, out)
        elif "\r" not in text and "\x1b" not in text and not _has_control(data):
            self._feed_clean(text, out, strip=False)
        elif not _needs_render(text):
            self._feed_clean(text, out, strip=True)
        else:
            self._feed_text(text, out)
        return out

    def partial(self) -> Line | None:
        """The pending line as ``partial=True``, numbered as it will be when it ends.

        None when nothing visible is pending, or when it has not changed since the last call.
        A partial line that never gets a final line with its number (a spinner, erased before
        its newline) is to be dropped by the consumer when the next line with that number, or
        the end of the run, arrives.
        """
        if self._version == self._seen:
            return None
        self._seen = self._version
        if self._row is not None:
            text, plain = self._row.render()
        elif self._raw:
            text = "".join(self._raw)
            self._raw = [text]
            plain = strip_ansi(text)
        else:
            return None
        if not plain.strip():
            return None
        num = self._count + 1
        if self._shown == (num, text):
            return None
        self._shown = (num, text)
        return Line(text, plain, num, True, self._cont)

    def finish(self) -> list[Line]:
        """At the end of the output: the rest of the decoder and the pending line, if visible.

        The splitter is empty afterwards and may be fed again (line numbers keep counting).
        """
        text = self._carry + self._decoder.decode(b"", True)
        self._carry = ""
        out: list[Line] = []
        if text and text != "\r":  # a last CR only moves the cursor
            self._feed_text(text, out)
        if self._row is not None:
            self._end_row(out, newline=False)
        elif self._raw:
            raw = "".join(self._raw)
            self._raw, self._raw_len = [], 0
            if strip_ansi(raw).strip():
                self._emit_clean(raw, out)
        self._cont = False
        self._version += 1
        return out

    def pending(self) -> str | None:
        """The pending line's plain text when something visible is pending, else None; unlike
        :meth:`partial` it changes nothing (the waiting-for-input check reads it)."""
        if self._row is not None:
            plain = self._row.render()[1]
        elif self._raw:
            plain = strip_ansi("".join(self._raw))
        else:
            return None
        return plain if plain.strip() else None

    # -- decoding ------------------------------------------------------------------------------

    def _decode(self, data: bytes) -> str:
        text = self._decode_bytes(data)
        if self._carry:
            text = self._carry + text
            self._carry = ""
        if not text:
            return text
        text = text.replace("\r\n", "\n")
        # Hold back what the next chunk may complete: a CR that may be half of a CRLF, or an
        # escape sequence cut in two (its halves would otherwise be read as text).
        if text[-1] == "\r":
            self._carry = "\r"
            return text[:-1]
        i = text.rfind("\x1b", max(0, len(text) - _CARRY_MAX))
        if i >= 0 and _UNFINISHED.match(text, i):
            self._carry = text[i:]
            return text[:i]
        return text

    # -- the fast path -------------------------------------------------------------------------

    def _feed_clean(self, text: str, out: list[Line], strip: bool) -> None:
        """``text`` needs no rendering: every complete line is kept as printed.

        ``strip``: ``text`` has escapes or controls to take out of ``plain``; without them each
        line is its own plain text.
        """
        segs = text.split("\n")
        last = segs.pop()
        if segs:
            start = 0
            if self._raw:
                # The pending start of the first line came in an earlier chunk, which may have
                # had escapes in it even if this one has none.
                first = "".join(self._raw) + segs[0]
                self._raw, self._raw_len = [], 0
                self._emit_clean(first, out)
                start = 1
            limit = self._max
            count = self._count
            append = out.append
            for i in range(start, len(segs)):
                seg = segs[i]
                if len(seg) > limit:
                    self._count = count
                    self._emit_clean(seg, out)
                    count = self._count
                else:
                    count += 1
                    append(Line(seg, strip_ansi(seg) if strip else seg, count))
            self._count = count
            if self._screen_row is not None:
                self._screen_row += len(segs)
        if last:
            self._append_raw(last, out)

    def _append_raw(self, text: str, out: list[Line]) -> None:
        self._raw.append(text)
        self._raw_len += len(text)
        if self._raw_len > self._max:
            # Cut now, not at the newline: an agent may never send one.
            raw = "".join(self._raw)
            while len(raw) > self._max:
                cut = _safe_cut(raw, self._max)
                self._push(raw[:cut], strip_ansi(raw[:cut]), out)
                self._cont = True
                raw = raw[cut:]
            self._raw, self._raw_len = [raw], len(raw)

    def _emit_clean(self, text: str, out: list[Line]) -> None:
        """Emit a complete line that needs no rendering, cut into pieces if too long."""
        while len(text) > self._max:
            cut = _safe_cut(text, self._max)
            self._push(text[:cut], strip_ansi(text[:cut]), out)
            self._cont = True
            text = text[cut:]
        self._push(text, strip_ansi(text), out)
        self._cont = False

    def _push(self, text: str, plain: str, out: list[Line]) -> None:
        self._count += 1
        out.append(Line(text, plain, self._count, False, self._cont))

    # -- the general path ----------------------------------------------------------------------

    def _feed_text(self, text: str, out: list[Line]) -> None:
        segs = text.split("\n")
        last = segs.pop()
        for seg in segs:
            self._segment(seg, out, True)
            if self._screen_row is not None:
                self._screen_row += 1
        if last:
            self._segment(last, out, False)

    def _segment(self, seg: str, out: list[Line], ends: bool) -> None:
        """Add ``seg`` to the pending line; ``ends``: a newline followed it."""
        if self._row is None and not _needs_render(seg):
            if not ends:
                self._append_raw(seg, out)
                return
            if self._raw:
                seg = "".join(self._raw) + seg
                self._raw, self._raw_len = [], 0
            self._emit_clean(seg, out)
            return
        if self._row is None:
            self._row = _Row(self._max)
            if self._raw:
                raw = "".join(self._raw)
                self._raw, self._raw_len = [], 0
                self._draw(raw, out)
        self._draw(seg, out)
        if ends:
            self._end_row(out, newline=True)

    def _end_row(self, out: list[Line], newline: bool) -> None:
        """The pending row is done: emit it unless it is invisible (see the module docstring)."""
        row = self._row
        self._row = None
        if row is None:
            return
        text, plain = row.render()
        if plain.strip() or (newline and row.keep_blank and not row.printed):
            self._push(text, plain, out)
        self._cont = False

    def _new_row(self, out: list[Line], screen_col: int) -> None:
        """The cursor went to another row: end this line and start one at ``screen_col``."""
        style = self._row.style if self._row is not None else None
        self._end_row(out, newline=False)
        self._row = _Row(self._max, min(max(screen_col, 0), self._max), style, keep_blank=False)

    def _draw(self, text: str, out: list[Line]) -> None:
        pos = 0
        for m in _TOKEN.finditer(text):
            start = m.start()
            if start > pos:
                self._write(text[pos:start], out)
            pos = m.end()
            self._control(m, out)
        if pos < len(text):
            self._write(text[pos:], out)

    def _write(self, text: str, out: list[Line]) -> None:
        row = self._row
        assert row is not None
        row.write(text)
        while len(row.chars) > self._max:
            text_, plain = row.render(self._max)
            self._push(text_, plain, out)
            self._cont = True
            row.shift(self._max)

    def _control(self, m: re.Match[str], out: list[Line]) -> None:
        row = self._row
        assert row is not None
        token = m.group()
        if token[0] != "\x1b":
            if token == "\r":
                row.move(0)
            elif token == "\b":
                row.move(row.col - 1)
            elif token == "\t":
                row.tab()
            return  # every other control prints nothing
        final = m.group(3)
        if final is not None:
            self._csi(m.group(1), m.group(2), final, out)
            return
        esc = m.group(4)
        screen_col = row.origin + row.col
        if esc == "8":  # restore cursor: to a row we did not track
            self._screen_row = None
            self._new_row(out, 0)
        elif esc in ("D", "E", "M"):  # index, next line, reverse index
            if self._screen_row is not None:
                self._screen_row = max(1, self._screen_row + (-1 if esc == "M" else 1))
            self._new_row(out, 0 if esc == "E" else screen_col)
        elif esc == "c":  # full reset
            self._screen_row = None
            self._new_row(out, 0)
            assert self._row is not None
            self._row.style = SGRState()
        # OSC and other strings, charset designations, keypad modes: nothing on screen.

    def _csi(self, params: str, intermediates: str, final: str, out: list[Line]) -> None:
        row = self._row
        assert row is not None
        if intermediates:
            return  # DECRQM, cursor style and the like: nothing on screen
        if params[:1] in ("?", ">", "<", "="):
            modes = params[1:].split(";")
            if final in "hl" and params[0] == "?" and _ALT_SCREEN.intersection(modes):
                self._screen_row = None
                self._new_row(out, 0)
            return
        if final == "m":
            row.style.apply(params)
        elif final == "K":
            row.erase(_number(params, 0, 0))
        elif final == "J":  # erase in display: the part of it on this row
            row.erase(min(_number(params, 0, 0), 2))
        elif final in "G`":
            row.move_abs(_number(params, 0, 1) - 1)
        elif final in "Ca":
            row.move(row.col + _number(params, 0, 1))
        elif final == "D":
            row.move(row.col - _number(params, 0, 1))
        elif final == "X":
            row.blank(row.col, row.col + _number(params, 0, 1))
        elif final == "P":
            row.delete(_number(params, 0, 1))
        elif final == "@":
            row.insert(_number(params, 0, 1))
        elif final in "Hf":
            self._goto(_number(params, 0, 1), _number(params, 1, 1) - 1, out)
        elif final == "d":
            self._goto(_number(params, 0, 1), row.origin + row.col, out)
        elif final in "ABEF":
            n = _number(params, 0, 1)
            if self._screen_row is not None:
                self._screen_row = max(1, self._screen_row + (n if final in "BE" else -n))
            self._new_row(out, 0 if final in "EF" else row.origin + row.col)
        elif final == "u" and not params:  # restore cursor
            self._screen_row = None
            self._new_row(out, 0)

    def _goto(self, screen_row: int, screen_col: int, out: list[Line]) -> None:
        row = self._row
        assert row is not None
        if screen_row == self._screen_row:
            row.move_abs(screen_col)  # same row: only the column changes
        else:
            self._screen_row = screen_row
            self._new_row(out, screen_col)


