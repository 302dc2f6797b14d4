"""Raw terminal output bytes -> the lines a person saw on screen (pure: no I/O, no PTY).

A :class:`LineSplitter` takes the bytes a program wrote to its pseudo-terminal, in whatever
chunks the reads return, and gives back :class:`Line` objects:

- ``\\r\\n`` and ``\\n`` end a line; no line ever carries a ``\\r``.
- Redraws are applied the way a terminal applies them, on a one-row screen: a bare ``\\r``, ``\\b``,
  ``ESC[nG``/``C``/``D`` move the cursor, later text overwrites cells, ``ESC[K`` (0, 1, 2),
  ``ESC[nX``/``P``/``@`` erase, delete and insert. ``"50%\\r100%\\n"`` gives ``"100%"``. Each cell
  keeps the colour it was drawn with; a redrawn line is rendered again with one SGR sequence per
  change of colour and a reset at the end.
- A line that needed no redraw keeps its text exactly as printed, escapes included, except
  the ones that only set a terminal mode (``ESC[?25h`` and the like, see :data:`_MODE_ESC`):
  the fast path, which is nearly all output. ``plain`` is ``text`` without escapes or controls
  (the same object when there were none).
- Cells follow the terminal's widths (``wcwidth``, :mod:`supervisor.widths`): a wide character
  takes two cells, a combining one joins the cell before it, and writing over half of a wide
  character blanks the other half. ``日本語abc\\rXY`` gives ``XY本語abc``.
- A line whose content was drawn and then wiped out (a spinner: ``⠙ESC[1GESC[0K``) is dropped
  and gives up its line number; an empty line that nothing was drawn on is kept as ``""``.
- A cursor-up redraw of the last lines (``ESC[nA``, ``ESC[nF``, ``ESC M``, then drawing, as
  ink, log-update and npm's progress trees do) replaces them: the redrawn line comes out again
  with its own ``line_num`` and ``redraw=True``, once the cursor leaves it downwards (or goes
  back to the bottom, or :meth:`LineSplitter.redrawn` is asked, or the output ends), and only
  if it changed. ``ESC[J`` from such a line erases the lines below it too.
- A line longer than ``max_line_length`` is cut into pieces of that many characters (characters
  of the raw text for a line kept as printed, screen cells for a redrawn one), each a final
  ``Line`` with its own number; the later ones have ``continuation=True``. A cut never splits an
  escape sequence, nor a wide character from its right half. Memory held for a pending line
  stays near ``max_line_length`` whatever the program does.

Limits, on purpose. This is not a terminal emulator: there is the current row, and the last
lines for redraws. The virtual screen (:mod:`supervisor.screen`) shows what it cannot.

- A cursor-up redraw is followed while every line between the cursor and the bottom took one
  row: none wider than the terminal (``cols``), none cut in pieces, none above the top of the
  screen (``rows``). It stops at anything else: a move up past those lines, an absolute move
  (``ESC[row;colH``, ``ESC[nd``), ``ESC 8``, ``ESC[u``, the alternate screen, a reset. Lines
  redrawn until then are emitted, and later text starts new lines, as below.
- Any other move to another row (``ESC[row;colH``, ``ESC[H``, ``ESC[nd``, ``ESC[nB``/``E`` at
  the bottom, ``ESC D``/``E``/``8``, ``ESC[u``, switching to or from the alternate screen) ends
  the current line, which is emitted if it has visible content, and later text starts a new one
  at that column. So the words a full-screen program draws still come out as lines ("OpenAI
  Codex" from its welcome box), in drawing order, once per redraw, without layout. Moves to the
  row the cursor is known to be on (the row of the last absolute move, plus newlines since)
  stay on the line and only move the column, so one row drawn in pieces comes out as one line.
- Colour state starts afresh with every redrawn line (a line kept as printed carries whatever
  escapes it had); cut pieces after the first do not repeat the colour that was active.
- A tab in a redrawn line moves to the next multiple of 8 and becomes spaces.

Not safe to share between threads; one splitter per run of an agent.
"""
from __future__ import annotations

import codecs
import re
from collections import deque
from dataclasses import dataclass
from itertools import groupby

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
from .widths import all_narrow, char_width, known_width

__all__ = ["Line", "LineSplitter"]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of output as a person saw it.

    ``text`` keeps SGR colour sequences and never contains ``\\r`` or ``\\n``; ``plain`` is what
    extractors match. A ``partial`` line has no newline yet: a later line with the same
    ``line_num`` (partial or final) replaces it. ``continuation`` marks the second and later
    pieces of a line cut at ``max_line_length``. A ``redraw`` line is a final line emitted
    before, drawn again in place (the program moved the cursor up to it): it replaces the
    line with its ``line_num``.
    """

    text: str
    plain: str
    line_num: int
    partial: bool = False
    continuation: bool = False
    redraw: bool = False


#: How far back from the end of a chunk an unfinished escape sequence is looked for and held
#: until the next chunk; a longer one (a huge OSC title) is let through as it is.
_CARRY_MAX = 4096
_TAB = 8
#: Final lines kept for cursor-up redraws: at least the tallest terminal (500 rows).
_RECENT = 512

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

#: Escapes that set a mode of the terminal and print nothing: DEC private modes (cursor
#: visibility ``ESC[?25h``, bracketed paste, mouse), every other CSI with a private marker
#: (keyboard protocols ``ESC[>7u``, ``ESC[?u``, ``ESC[>4;0m``), ANSI modes (``ESC[4h``), the
#: cursor style (``ESC[2 q``) and the keypad modes (``ESC=``, ``ESC>``). A line kept as printed
#: drops them from ``text`` as well: on a line they mean nothing, and pip's stray ``ESC[?25h``
#: would otherwise ride along in the next line. (One pass over a chunk with escapes costs
#: about a fifth of what taking the escapes out of its lines' ``plain`` does.)
_MODE_ESC = re.compile(r"\x1b(?:\[(?:[<=>?][0-?]*[ -/]*[@-~]|[0-9;]*(?:[hl]| q))|[=>])")

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


def _without_modes(text: str) -> str:
    """``text`` without mode-setting escapes (see :data:`_MODE_ESC`)."""
    return _MODE_ESC.sub("", text) if "\x1b" in text else text


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


def _cells(text: str) -> int:
    """Terminal cells that ``text`` (without escapes) takes."""
    if text.isascii() or all_narrow(text):
        return len(text)
    return sum(char_width(ch) for ch in text)


def _sgr(before: str, after: str) -> str:
    """The sequence that switches from style ``before`` to style ``after``."""
    if not after:
        return "\x1b[0m"
    return f"\x1b[0;{after}m" if before else f"\x1b[{after}m"


#: The right half of a wide character, in the cell after it. A NUL never reaches a row (every
#: control character is a token of its own), so it cannot be mistaken for text.
_TAIL = "\x00"


class _Row:
    """The row being drawn: one character and one style code per cell (``""`` = blank cell).

    Cells follow the terminal's widths (:mod:`supervisor.widths`): a wide character takes its
    cell and a :data:`_TAIL` after it, a zero-width one (a combining accent) joins the cell
    before it, and writing over either half of a wide character blanks the other, as xterm
    does. ``wide`` says a wide character was ever written: only such rows pay for the checks.

    ``origin`` is the screen column of cell 0, so absolute column moves land right on a row
    that a full-screen program started drawing mid-screen.
    """

    __slots__ = (
        "chars", "col", "keep_blank", "limit", "origin", "printed", "style", "styled", "styles", "wide",
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
        self.wide = False  # some cell holds (or held) a wide character
        # An empty row that a newline ends is a blank line, unless it only exists because a
        # cursor move started it.
        self.keep_blank = keep_blank

    def write(self, text: str) -> None:
        if all_narrow(text):
            self._put(text)
        else:
            self._write_mixed(text)

    def _put(self, text: str) -> None:
        """Write ``text`` one code point per cell from the cursor on."""
        chars, styles, col, n = self.chars, self.styles, self.col, len(text)
        if col > len(chars):
            pad = col - len(chars)
            chars.extend([""] * pad)
            styles.extend([""] * pad)
        if self.wide:
            self._split_wide(col, col + n)
        code = self.style.code
        chars[col:col + n] = text
        styles[col:col + n] = [code] * n
        self.col = col + n
        self.printed = True
        if code:
            self.styled = True

    def _write_mixed(self, text: str) -> None:
        """Text with wide or zero-width characters: narrow runs go in whole, the rest by cell."""
        for width, run in groupby(text, known_width):
            if width == 1:
                self._put("".join(run))
                continue
            for ch in run:
                w = char_width(ch) if width is None else width
                if w == 1:
                    self._put(ch)
                elif w == 2:
                    self._write_wide(ch)
                else:
                    self._combine(ch)

    def _write_wide(self, ch: str) -> None:
        self.wide = True
        self._put(ch + _TAIL)

    def _combine(self, mark: str) -> None:
        """A zero-width character joins the cell before the cursor (dropped at the first one)."""
        at = self.col - 1
        chars = self.chars
        if at >= len(chars) or at < 0:
            return
        if chars[at] == _TAIL:
            at -= 1
        chars[at] = (chars[at] or " ") + mark
        self.printed = True

    def _split_wide(self, start: int, stop: int) -> None:
        """Cells ``start`` to ``stop - 1`` are about to change: a wide character cut in two by
        that range loses its other half too (the half outside becomes blank)."""
        chars = self.chars
        if 0 < start < len(chars) and chars[start] == _TAIL:
            chars[start - 1] = ""
        if 0 < stop < len(chars) and chars[stop] == _TAIL:
            chars[stop] = ""

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
            if self.wide:
                self._split_wide(self.col, len(self.chars))
            del self.chars[self.col:], self.styles[self.col:]
        elif mode == 1:
            self.blank(0, self.col + 1)
        elif mode == 2:
            self.chars.clear()
            self.styles.clear()

    def blank(self, start: int, stop: int) -> None:
        stop = min(stop, len(self.chars))
        if stop > start:
            if self.wide:
                self._split_wide(start, stop)
            self.chars[start:stop] = [""] * (stop - start)
            self.styles[start:stop] = [""] * (stop - start)

    def delete(self, n: int) -> None:
        col = self.col
        if self.wide:
            self._split_wide(col, col + n)
        del self.chars[col:col + n], self.styles[col:col + n]
        if self.wide and col < len(self.chars) and self.chars[col] == _TAIL:
            self.chars[col] = ""

    def insert(self, n: int) -> None:
        if self.col < len(self.chars):
            n = min(n, self.limit)
            if self.wide and self.chars[self.col] == _TAIL:
                self.chars[self.col - 1] = self.chars[self.col] = ""
            self.chars[self.col:self.col] = [""] * n
            self.styles[self.col:self.col] = [""] * n
            self.truncate()

    def truncate(self) -> None:
        """Cells pushed past the last column fall off, as at a terminal's right margin."""
        if self.wide and len(self.chars) > self.limit:
            self._split_wide(self.limit, self.limit)
        del self.chars[self.limit:], self.styles[self.limit:]

    def cut_at(self, limit: int) -> int:
        """Where to cut the row for a piece of at most ``limit`` cells: never between a wide
        character and its right half (a piece of one cell then takes both)."""
        if self.wide and limit < len(self.chars) and self.chars[limit] == _TAIL:
            return limit - 1 if limit > 1 else 2
        return limit

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
        if self.wide:
            pairs = [(c or " ", code) for c, code in zip(chars[:end], self.styles) if c != _TAIL]
            cells = [c for c, _ in pairs]
            codes = [code for _, code in pairs]
        else:
            cells = [c or " " for c in chars[:end]]
            codes = self.styles
        plain = "".join(cells)
        if not self.styled:
            return plain, plain
        parts: list[str] = []
        current = ""
        for cell, code in zip(cells, codes):
            if code != current:
                parts.append(_sgr(current, code))
                current = code
            parts.append(cell)
        if current:
            parts.append("\x1b[0m")
        return "".join(parts), plain


def _rebuild(text: str, limit: int) -> _Row:
    """The cells of an emitted line, from its text (colours from its SGR sequences; a line of
    the fast path has no other escape that draws)."""
    row = _Row(limit)
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            row.write(text[pos:m.start()])
        pos = m.end()
        if m.group(3) == "m" and not m.group(2) and m.group(1)[:1] not in ("?", ">", "<", "="):
            row.style.apply(m.group(1))
        elif m.group() == "\t":
            row.tab()
    if pos < len(text):
        row.write(text[pos:])
    return row


class LineSplitter:
    """Turns one run's output bytes into :class:`Line` objects; see the module docstring.

    ``feed`` never raises on bad input: invalid UTF-8 becomes U+FFFD, and a character or an
    escape sequence split across two chunks is handled whole.
    """

    __slots__ = (
        "_bulk",
        "_carry",
        "_cols",
        "_cont",
        "_count",
        "_decode_bytes",
        "_decoder",
        "_edit",
        "_edited",
        "_max",
        "_raw",
        "_raw_len",
        "_recent",
        "_row",
        "_rows",
        "_screen_row",
        "_seen",
        "_shown",
        "_version",
    )

    def __init__(self, max_line_length: int = 65536, cols: int = 120, rows: int = 40) -> None:
        if max_line_length < 1:
            raise ValueError("max_line_length must be at least 1")
        self._max = max_line_length
        self._cols, self._rows = cols, min(rows, _RECENT)
        # Cursor-up redraws: the last final lines, the one the cursor is on (None: the pending
        # line at the bottom) and lines left while being redrawn, not yet emitted again.
        self._recent: deque[Line] = deque(maxlen=_RECENT)
        self._edit: int | None = None
        self._edited: dict[int, _Row] = {}
        self._bulk = False  # the fast path is adding lines: it remembers them itself
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
        """Number of final lines so far (cut pieces count one each; redraws do not count)."""
        return self._count

    def resize(self, cols: int, rows: int) -> None:
        """The terminal's size, which bounds how far up a redraw can reach."""
        self._cols, self._rows = cols, min(rows, _RECENT)

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
            self._feed_clean(_without_modes(text), out, strip=True)
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
        if self._edit is not None:
            return None  # the cursor is on a line emitted before: nothing is pending below
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

    def redrawn(self) -> list[Line]:
        """Lines being redrawn in place, as they are now (``redraw=True``), if they changed
        since they were last emitted; they stay open to more redrawing."""
        out: list[Line] = []
        self._flush_edits(out, keep_current=True)
        return out

    def finish(self) -> list[Line]:
        """At the end of the output: the rest of the decoder and the pending line, if visible.

        The splitter is empty afterwards and may be fed again (line numbers keep counting).
        """
        text = self._carry + self._decoder.decode(b"", True)
        self._carry = ""
        out: list[Line] = []
        if text and text != "\r":  # a last CR only moves the cursor
            self._feed_text(text, out)
        if self._edit is not None:
            self._leave_edit(out)
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
            first_new = len(out)
            self._bulk = True
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
            self._bulk = False
            self._recent.extend(out[max(first_new, len(out) - _RECENT):])
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
        line = Line(text, plain, self._count, False, self._cont)
        out.append(line)
        if not self._bulk:
            self._recent.append(line)

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
            seg = _without_modes(seg)
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
            if self._edit is not None:
                self._down(1, 0, out)  # the newline leaves a redrawn line for the one below it
            else:
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
        if self._edit is not None:
            self._leave_edit(out)  # a move the redraw model does not follow
        else:
            self._end_row(out, newline=False)
        self._row = _Row(self._max, min(max(screen_col, 0), self._max), style, keep_blank=False)

    # -- cursor-up redraws ----------------------------------------------------------------------
    #
    # A program that moves the cursor up (CUU, CPL, RI) and draws again (ink, log-update, npm's
    # progress trees) redraws lines emitted before. The model: the cursor is on the pending line
    # at the bottom, and line L is n rows above it when L = pending - n, as long as every line in
    # between took one row (none wider than the terminal, none cut in pieces) and L is still on
    # the screen. The cursor then edits line L's cells; the line is emitted again (redraw=True)
    # when the cursor leaves it downwards, when it is back at the bottom, at redrawn() and at the
    # end, and only if it changed. Any other move to another row ends the model (lines redrawn
    # so far are emitted) and is handled as before.

    def _up(self, n: int, screen_col: int, out: list[Line]) -> bool:
        """Move up ``n`` rows onto an emitted line; False if the model cannot follow."""
        current = self._edit if self._edit is not None else self._count + 1
        target = current - n
        if not self._editable(target, current):
            return False
        row = self._row
        assert row is not None
        pen = row.style
        if self._edit is None:
            self._end_row(out, newline=False)  # the pending line, emitted if visible
        else:
            self._edited[self._edit] = row
        self._enter(target, screen_col, pen)
        return True

    def _down(self, n: int, screen_col: int, out: list[Line]) -> bool:
        """Move down ``n`` rows from a line being redrawn (emitted again as it is now); False
        when the cursor is at the bottom already."""
        current = self._edit
        if current is None:
            return False
        row = self._row
        assert row is not None
        self._redraw(current, row, out)
        target = current + n
        if target <= self._count:
            self._enter(target, screen_col, row.style)
        else:  # back on the pending line at the bottom
            self._edit = None
            self._row = None
            self._flush_edits(out)
            if screen_col:
                self._row = _Row(self._max, min(screen_col, self._max), row.style, keep_blank=False)
        return True

    def _editable(self, target: int, current: int) -> bool:
        if target < 1 or current - target > self._rows - 1:
            return False  # above the first line, or above the top of the screen
        for num in range(target, min(current, self._count + 1)):
            line = self._line_at(num)
            if line is None or line.continuation or _cells(line.plain) > self._cols:
                return False  # gone, or it took more than one row
        return True

    def _line_at(self, num: int) -> Line | None:
        recent = self._recent
        index = num - recent[0].line_num if recent else -1
        return recent[index] if 0 <= index < len(recent) else None

    def _enter(self, num: int, screen_col: int, pen: SGRState) -> None:
        """Put the cursor on line ``num`` at ``screen_col``, to draw over its cells."""
        row = self._edited.pop(num, None)
        if row is None:
            line = self._line_at(num)
            assert line is not None
            row = _rebuild(line.text, self._max)
        row.style = pen
        row.move(screen_col - row.origin)
        self._row = row
        self._edit = num

    def _redraw(self, num: int, row: _Row, out: list[Line]) -> None:
        """Emit line ``num`` as ``row`` shows it, if that differs from its last version."""
        text, plain = row.render()
        index = num - self._recent[0].line_num
        if self._recent[index].text != text:
            line = Line(text, plain, num, redraw=True)
            self._recent[index] = line
            out.append(line)

    def _flush_edits(self, out: list[Line], keep_current: bool = False) -> None:
        """Emit every line left while being redrawn (and, with ``keep_current``, the one the
        cursor is on, which stays open); in line order."""
        edited = self._edited
        if keep_current and self._edit is not None and self._row is not None:
            edited = {**edited, self._edit: self._row}
        for num in sorted(edited):
            self._redraw(num, edited[num], out)
        self._edited = {}

    def _leave_edit(self, out: list[Line]) -> None:
        """The cursor leaves the redraw model: every line redrawn so far is emitted."""
        assert self._edit is not None and self._row is not None
        self._edited[self._edit] = self._row
        self._edit = None
        self._row = None
        self._flush_edits(out)

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
            cut = row.cut_at(self._max)
            text_, plain = row.render(cut)
            self._push(text_, plain, out)
            self._cont = True
            row.shift(cut)

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
            col = 0 if esc == "E" else screen_col
            moved = self._up(1, col, out) if esc == "M" else self._down(1, col, out)
            if not moved:
                self._new_row(out, col)
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
            mode = min(_number(params, 0, 0), 2)
            row.erase(mode)
            if mode == 0 and self._edit is not None:  # and the lines below, being redrawn
                for num in range(self._edit + 1, self._count + 1):
                    self._edited[num] = _Row(self._max)
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
            col = 0 if final in "EF" else row.origin + row.col
            moved = self._up(n, col, out) if final in "AF" else self._down(n, col, out)
            if not moved:
                self._new_row(out, col)
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


