"""The cells of a virtual screen: rows of characters and styles, and how a row is rendered.

A :class:`Row` holds one string and one style code per column. A cell's string is ``" "``
when blank, a character (with any combining marks after it), or ``""`` for the right half of a
wide character, which lives in the cell to its left. A style code is the SGR parameter string
that recreates the cell's look (``"1;31"``; ``""`` is the default), the form the line pipeline
uses too.

Every change to a row records the screen's change number in ``seq``, so that the rows changed
since a given number can be found without comparing contents; ``wrapped`` says that the
row's text went on into the next row because it reached the margin (a soft wrap), so that
readers can join such rows back into the line the program printed.

Rendering is cached per row and change number: a snapshot costs only the rows that changed.
"""
from __future__ import annotations

from supervisor.widths import char_width

__all__ = ["Row", "blank_rows"]


def _sgr(code: str) -> str:
    return f"\x1b[0;{code}m" if code else "\x1b[0m"


class Row:
    """One row of cells; see the module docstring. Not safe to share between threads."""

    __slots__ = ("_rendered", "chars", "seq", "styles", "wrapped")

    def __init__(self, cols: int, seq: int, code: str = "") -> None:
        self.chars = [" "] * cols
        self.styles = [code] * cols
        self.seq = seq
        self.wrapped = False
        self._rendered: tuple[int, str, str] | None = None

    def clear(self, code: str, seq: int) -> None:
        """Blank the whole row (for reuse as a new row scrolled in)."""
        cols = len(self.chars)
        self.chars = [" "] * cols
        self.styles = [code] * cols
        self.wrapped = False
        self.seq = seq

    # --- writing ---------------------------------------------------------------------------

    def put(self, x: int, text: str, code: str, seq: int) -> None:
        """Write narrow characters from column ``x`` on (the caller keeps them in the row)."""
        chars = self.chars
        end = x + len(text)
        if chars[x] == "" and x:
            chars[x - 1] = " "  # the left half of a wide character we write over the right half of
        if end < len(chars) and chars[end] == "":
            chars[end] = " "  # the right half of a wide character whose left half we overwrite
        chars[x:end] = text
        self.styles[x:end] = [code] * len(text)
        self.seq = seq

    def put_wide(self, x: int, ch: str, code: str, seq: int) -> None:
        """Write a two-cell character at ``x`` and ``x + 1`` (both inside the row)."""
        self.put(x, ch + " ", code, seq)
        self.chars[x + 1] = ""

    def combine(self, x: int, mark: str, seq: int) -> None:
        """Add a zero-width character to the cell at ``x`` (or the wide character it is part of)."""
        chars = self.chars
        if chars[x] == "" and x:
            x -= 1
        chars[x] += mark
        self.seq = seq

    def erase(self, start: int, stop: int, code: str, seq: int) -> None:
        """Blank columns ``start`` to ``stop - 1`` with the style ``code`` (a background)."""
        chars = self.chars
        stop = min(stop, len(chars))
        if start >= stop:
            return
        if chars[start] == "" and start:
            chars[start - 1] = " "
        if stop < len(chars) and chars[stop] == "":
            chars[stop] = " "
        chars[start:stop] = " " * (stop - start)
        self.styles[start:stop] = [code] * (stop - start)
        if stop == len(chars):
            self.wrapped = False
        self.seq = seq

    def insert(self, x: int, n: int, code: str, seq: int) -> None:
        """Insert ``n`` blank cells at ``x``; cells pushed past the margin are lost."""
        cols = len(self.chars)
        n = min(n, cols - x)
        if n <= 0:
            return
        chars, styles = self.chars, self.styles
        if chars[x] == "" and x:
            chars[x - 1] = " "
            chars[x] = " "
        chars[x:x] = " " * n
        styles[x:x] = [code] * n
        del chars[cols:], styles[cols:]
        self._fix_cut_right()
        self.seq = seq

    def delete(self, x: int, n: int, code: str, seq: int) -> None:
        """Delete ``n`` cells at ``x``; the rest moves left, blanks come in at the margin."""
        cols = len(self.chars)
        n = min(n, cols - x)
        if n <= 0:
            return
        chars, styles = self.chars, self.styles
        if chars[x] == "" and x:
            chars[x - 1] = " "
        del chars[x:x + n], styles[x:x + n]
        if x < len(chars) and chars[x] == "":
            chars[x] = " "  # the right half of a wide character whose left half was deleted
        chars.extend(" " * n)
        styles.extend([code] * n)
        self.seq = seq

    def _fix_cut_right(self) -> None:
        """A wide character whose right half fell off the margin becomes a blank."""
        chars = self.chars
        if chars and chars[-1] not in (" ", "") and char_width(chars[-1][0]) == 2:
            chars[-1] = " "

    def resize(self, cols: int, code: str = "") -> None:
        """Cut or extend the row to ``cols`` cells."""
        chars, styles = self.chars, self.styles
        if cols < len(chars):
            del chars[cols:], styles[cols:]
            self._fix_cut_right()
        else:
            grow = cols - len(chars)
            chars.extend(" " * grow)
            styles.extend([code] * grow)
        self._rendered = None

    # --- reading ---------------------------------------------------------------------------

    def render(self) -> tuple[str, str]:
        """``(text, ansi)``: the row as shown, without and with SGR sequences. Trailing blanks
        are left out of ``text``, and out of ``ansi`` unless they show a colour."""
        cached = self._rendered
        if cached is not None and cached[0] == self.seq:
            return cached[1], cached[2]
        chars, styles = self.chars, self.styles
        text = "".join(chars).rstrip(" ")
        end = len(chars)
        while end and chars[end - 1] in (" ", "") and not styles[end - 1]:
            end -= 1
        if not any(styles[:end]):
            ansi = text
        else:
            parts: list[str] = []
            current = ""
            for i in range(end):
                code = styles[i]
                if code != current:
                    parts.append(_sgr(code))
                    current = code
                parts.append(chars[i])
            if current:
                parts.append("\x1b[0m")
            ansi = "".join(parts)
        self._rendered = (self.seq, text, ansi)
        return text, ansi


def blank_rows(count: int, cols: int, seq: int, code: str = "") -> list[Row]:
    return [Row(cols, seq, code) for _ in range(count)]
