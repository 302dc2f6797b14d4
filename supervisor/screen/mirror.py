"""The server's copy of a screen kept by a worker process: rows as strings, read like a screen.

:class:`ScreenMirror` has the reading face of :class:`~supervisor.screen.VirtualScreen`
(``cols``, ``rows``, ``seq``, ``cursor``, ``alternate``, ``snapshot()``, ``changes(since)``,
``lines()``), so that ``GET /screen``, the screen streams and the settled screens read it as
they read an emulator. It is built from the worker's updates (:mod:`.protocol`), which cost one
JSON decode and a few list stores each, at most every 20 ms.

Its ``seq`` is its own: one more for each update it applied (and for a resize). A worker
restarted after a crash starts its own count again, and the mirror's goes on.

A resize is shown at once, before the worker has done it: rows are cut or padded as the
emulator does (rows below the cursor go first), the text of each row is cut to the new width,
and a row whose colours the cut would have to parse shows the cut text without colours. The
worker's next update lists every row and replaces that guess; updates it sent before it saw
the resize (an older resize generation, ``gen``) are ignored, since the one after lists
everything anyway.
"""
from __future__ import annotations

from typing import Any

from supervisor.screen.emulator import Cursor, ScreenLine
from supervisor.widths import all_narrow, char_width

__all__ = ["ScreenMirror", "seed"]


def _cells(text: str) -> int:
    return len(text) if all_narrow(text) else sum(char_width(ch) for ch in text)


def _cut(text: str, cols: int) -> str:
    if _cells(text) <= cols:
        return text
    out, used = [], 0
    for ch in text:
        width = char_width(ch)
        if used + width > cols:
            break
        out.append(ch)
        used += width
    return "".join(out)


class ScreenMirror:
    """See the module docstring. Not safe to share between threads."""

    def __init__(self, cols: int, rows: int, gen: int = 0) -> None:
        self._cols, self._rows = cols, rows
        self._text = [""] * rows
        self._ansi = [""] * rows
        self._wrapped = [False] * rows
        self._stamps = [0] * rows
        self._seq = 0
        self._floor = 0  # changes() since before this lists every row (a resize)
        self._cursor = Cursor(0, 0, True)
        self._alternate = False
        self._modes = {"app_cursor_keys": False, "bracketed_paste": False}
        #: The resize generation shown: updates of an older one are ignored.
        self.gen = gen
        #: Whether an update came (the worker's first comes once it has read what waited for it).
        self.ready = False

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def alternate(self) -> bool:
        return self._alternate

    @property
    def cursor(self) -> Cursor:
        return self._cursor

    # -- changes ---------------------------------------------------------------------------

    def apply(self, update: dict[str, Any]) -> bool:
        """Apply a worker's update; False if it was of an older resize generation."""
        if update["gen"] < self.gen:
            return False
        seq = self._seq + 1
        cols, rows = update["cols"], update["rows"]
        if (cols, rows) != (self._cols, self._rows):
            self._set_size(cols, rows, seq)
        text, ansi, wrapped, stamps = self._text, self._ansi, self._wrapped, self._stamps
        for row, row_text, row_ansi, row_wrapped in update["changed"]:
            if row < rows:
                text[row], ansi[row], wrapped[row], stamps[row] = row_text, row_ansi, row_wrapped, seq
        cursor = update["cursor"]
        self._cursor = Cursor(cursor["x"], cursor["y"], cursor["visible"])
        self._alternate = update["alternate"]
        self._modes = update["modes"]
        self._seq = seq
        self.ready = True
        return True

    def resize(self, cols: int, rows: int) -> None:
        """Show the new size at once (see the module docstring); the worker is told by the caller."""
        self.gen += 1
        if (cols, rows) == (self._cols, self._rows):
            return
        old_cols = self._cols
        seq = self._seq + 1
        if rows < self._rows:
            needed = self._rows - rows
            below = min(max(self._rows - 1 - self._cursor.y, 0), needed)
            keep = slice(needed - below, self._rows - below)
            for name in ("_text", "_ansi", "_wrapped", "_stamps"):
                setattr(self, name, getattr(self, name)[keep])
            self._cursor = self._cursor._replace(y=max(self._cursor.y - (needed - below), 0))
        self._set_size(cols, rows, seq)
        if cols < old_cols:
            for i, row in enumerate(self._text):
                cut = _cut(row, cols)
                if cut != row:
                    self._text[i] = self._ansi[i] = cut
        self._cursor = self._cursor._replace(x=min(self._cursor.x, cols - 1), y=min(self._cursor.y, rows - 1))
        self._seq = seq

    def _set_size(self, cols: int, rows: int, seq: int) -> None:
        grow = rows - len(self._text)
        if grow > 0:
            self._text += [""] * grow
            self._ansi += [""] * grow
            self._wrapped += [False] * grow
            self._stamps += [seq] * grow
        else:
            del self._text[rows:], self._ansi[rows:], self._wrapped[rows:], self._stamps[rows:]
        self._cols, self._rows = cols, rows
        self._stamps = [seq] * rows
        self._floor = seq

    # -- reading ---------------------------------------------------------------------------

    def _cursor_dict(self) -> dict[str, Any]:
        x, y, visible = self._cursor
        return {"x": x, "y": y, "visible": visible}

    def snapshot(self) -> dict[str, Any]:
        """As :meth:`VirtualScreen.snapshot <supervisor.screen.VirtualScreen.snapshot>`."""
        return {
            "cols": self._cols, "rows": self._rows, "cursor": self._cursor_dict(),
            "alternate": self._alternate, "seq": self._seq,
            "text": list(self._text), "ansi": list(self._ansi), "wrapped": list(self._wrapped),
            "modes": dict(self._modes),
        }

    def changes(self, since: int) -> dict[str, Any]:
        """As :meth:`VirtualScreen.changes <supervisor.screen.VirtualScreen.changes>`."""
        every = since < self._floor
        text, ansi, wrapped = self._text, self._ansi, self._wrapped
        changed = [{"row": i, "text": text[i], "ansi": ansi[i], "wrapped": wrapped[i]}
                   for i, stamp in enumerate(self._stamps) if every or stamp > since]
        return {
            "seq": self._seq, "cols": self._cols, "rows": self._rows, "cursor": self._cursor_dict(),
            "alternate": self._alternate, "modes": dict(self._modes), "changed": changed,
        }

    def lines(self) -> list[ScreenLine]:
        """As :meth:`VirtualScreen.lines <supervisor.screen.VirtualScreen.lines>`: a wrapped
        row counts with its blanks up to the margin."""
        out: list[ScreenLine] = []
        parts: list[str] = []
        first = 0
        last = self._rows - 1
        for index, text in enumerate(self._text):
            if not parts:
                first = index
            if self._wrapped[index] and index < last:
                parts.append(text + " " * max(self._cols - _cells(text), 0))
                continue
            parts.append(text)
            out.append(ScreenLine(first, index, "".join(parts)))
            parts = []
        return out


def seed(mirror: ScreenMirror) -> bytes:
    """Output that draws ``mirror``'s screen on a blank one: what a restarted worker is fed
    first. The visible screen comes back (text, colours, cursor, the alternate screen and the
    key modes); what it cannot hold does not: the main screen behind the alternate one, the
    scroll region, saved cursors, tab stops, soft-wrap flags."""
    parts = ["\x1b[?1049h" if mirror.alternate else "", "\x1b[H\x1b[2J"]
    for index, ansi in enumerate(mirror.snapshot()["ansi"]):
        if ansi:
            parts.append(f"\x1b[{index + 1};1H{ansi}\x1b[0m")
    x, y, visible = mirror.cursor
    parts.append(f"\x1b[{y + 1};{x + 1}H")
    if not visible:
        parts.append("\x1b[?25l")
    modes = mirror.snapshot()["modes"]
    if modes.get("app_cursor_keys"):
        parts.append("\x1b[?1h")
    if modes.get("bracketed_paste"):
        parts.append("\x1b[?2004h")
    return "".join(parts).encode()
