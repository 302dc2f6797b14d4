"""The screen's text as the lines a program printed, for extractors (pure).

A URL longer than the screen is wide comes out in pieces on its rows, one of two ways:

- the terminal wrapped it at the margin (a soft wrap, ``wrapped`` in a snapshot):
  :meth:`~supervisor.screen.VirtualScreen.lines` joins those rows;
- the program drew it row by row itself, as ratatui (codex) and most TUI libraries do, with a
  cursor move before each row and no wrap the terminal knows of. :func:`printed_lines` joins a
  row whose text runs to the last column with the row after it when that row starts at the
  line's first indentation or to the left of it: an indented block's next row keeps its
  indentation, and a line whose indentation was its own leading spaces goes on at the left
  edge (codex's sign-in URL: ``"  https://auth.openai.com/..."`` over four rows of 120
  columns, the last three from column 0). The join drops the next row's indentation. A row
  that ends in a box-drawing character (the right edge of a frame) or in a space is not joined.

The heuristic can join two rows that were never one line (prose that happens to end in the
last column, then a row at the same indentation or less): the text then reads ``word`` +
``next`` without a space. Extractors see both rows' words either way; a value across the join
is what it would be in the line the program printed.
"""
from __future__ import annotations

from supervisor.screen.emulator import ScreenLine, VirtualScreen
from supervisor.screen.mirror import ScreenMirror
from supervisor.widths import all_narrow, char_width

__all__ = ["printed_lines"]


def _cells(text: str) -> int:
    if all_narrow(text):
        return len(text)
    return sum(char_width(ch) for ch in text)


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _runs_to_the_margin(row: str, cols: int) -> bool:
    """Whether ``row`` (its text, trailing blanks left out) fills the row to the last column
    with something that is not a frame."""
    if not row or _cells(row) < cols:
        return False
    last = row[-1]
    return not ("\u2500" <= last <= "\u257f")  # box drawing: the right edge of a frame


def printed_lines(screen: VirtualScreen | ScreenMirror) -> list[ScreenLine]:
    """The screen's lines, soft-wrapped rows and rows a program drew up to the margin joined;
    ``first`` and ``last`` are the rows each takes (0-based)."""
    rows = screen.snapshot()["text"]
    cols = screen.cols
    out: list[ScreenLine] = []
    for line in screen.lines():
        if out:
            previous = out[-1]
            head = rows[previous.first]
            if (previous.last + 1 == line.first and _runs_to_the_margin(rows[previous.last], cols)
                    and line.text.strip() and _indent(line.text) <= _indent(head)):
                out[-1] = ScreenLine(previous.first, line.last, previous.text + line.text.lstrip(" "))
                continue
        out.append(line)
    return out
