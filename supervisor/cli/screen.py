"""``agent-supervisor screen NAME``: an agent's virtual screen in the user's terminal.

Without ``--follow`` it prints the screen as it is (``GET /api/agents/<name>/screen``): the
rows' text, with colours on a terminal. With ``--follow`` it reads the screen stream (a
snapshot, then row diffs; a fresh snapshot after every reconnection) into a
:class:`ScreenMirror` and redraws it: on a terminal, on the user's alternate screen, only the
rows that changed, cut to the terminal's size, with the agent's cursor; elsewhere as whole
frames of text, one each time the text changes. Ctrl-C ends it and gives the terminal back as
it was.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from typing import IO, Any
from urllib.parse import quote

from ..client import ApiError, Client, Follower
from ..widths import char_width
from .conventions import EXIT_FAILURE, EXIT_OK
from .render import colour_wanted, is_tty

__all__ = ["ScreenMirror", "cut_ansi", "screen"]

_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


class ScreenMirror:
    """The screen a screen stream describes: its ``snapshot``, then each ``diff`` applied, so
    that it always equals ``GET /screen`` at the stream's ``seq``. ``present`` is False while
    the agent's run has no screen (``no_screen``)."""

    def __init__(self) -> None:
        self.present = False
        self.run = 0
        self.seq = -1
        self.cols = self.rows = 0
        self.text: list[str] = []
        self.ansi: list[str] = []
        self.wrapped: list[bool] = []
        self.cursor: dict[str, Any] = {"x": 0, "y": 0, "visible": True}
        self.alternate = False
        self.modes: dict[str, bool] = {}

    def apply(self, kind: str, data: dict[str, Any]) -> list[int] | None:
        """Apply one event of the stream; returns the rows that changed (None: all of them,
        or the screen went away). Raises ``ValueError`` for a diff that does not follow the
        mirror's ``seq`` (the stream promises it always does)."""
        if kind == "snapshot":
            self.present = True
            self.run, self.seq = data["run"], data["seq"]
            self.cols, self.rows = data["cols"], data["rows"]
            self.text, self.ansi, self.wrapped = list(data["text"]), list(data["ansi"]), list(data["wrapped"])
            self._common(data)
            return None
        if kind == "no_screen":
            self.present = False
            self.run, self.seq = data["run"], -1
            return None
        if kind != "diff":
            return []
        if not self.present or data["since"] != self.seq:
            raise ValueError(f"a diff since {data['since']} for a mirror at {self.seq}")
        resized = (data["cols"], data["rows"]) != (self.cols, self.rows)
        if resized:
            self.cols, self.rows = data["cols"], data["rows"]
            for rows in (self.text, self.ansi):
                del rows[self.rows:]
                rows.extend([""] * (self.rows - len(rows)))
            del self.wrapped[self.rows:]
            self.wrapped.extend([False] * (self.rows - len(self.wrapped)))
        for change in data["changed"]:
            row = change["row"]
            self.text[row], self.ansi[row], self.wrapped[row] = change["text"], change["ansi"], change["wrapped"]
        self.seq = data["seq"]
        self._common(data)
        return None if resized else [change["row"] for change in data["changed"]]

    def _common(self, data: dict[str, Any]) -> None:
        self.cursor = dict(data["cursor"])
        self.alternate = data["alternate"]
        self.modes = dict(data.get("modes") or {})


def cut_ansi(row: str, cells: int) -> str:
    """``row`` (text with SGR sequences) cut after ``cells`` terminal cells, its sequences kept."""
    out: list[str] = []
    used = 0
    pos = 0
    for m in _ESCAPE.finditer(row + "\x1b[m"):
        for ch in row[pos:m.start()]:
            width = char_width(ch)
            if used + width > cells:
                return "".join(out) + "\x1b[0m"
            used += width
            out.append(ch)
        out.append(m.group() if m.start() < len(row) else "")
        pos = m.end()
    return "".join(out)


def _path(name: str, stream: bool = False) -> str:
    return f"/api/agents/{quote(name, safe='')}/screen" + ("/stream" if stream else "")


def screen(client: Client, args: argparse.Namespace) -> int:
    """Print an agent's screen, or follow it (``--follow``)."""
    colour = colour_wanted(args.color, sys.stdout)
    if not args.follow:
        try:
            shown = client.request("GET", _path(args.name))
        except ApiError as exc:
            if exc.code == "no_screen":
                print(f"{args.name}: {exc}", file=sys.stderr)
                return EXIT_FAILURE
            raise
        rows: list[str] = shown["ansi"] if colour else shown["text"]
        while rows and not rows[-1]:
            rows = rows[:-1]  # the blank rows at the bottom say nothing
        for row in rows:
            sys.stdout.write(row + ("\x1b[0m" if colour and "\x1b" in row else "") + "\n")
        sys.stdout.flush()
        return EXIT_OK
    client.agent(args.name)  # a 404 for an unknown agent, at once
    follower = Follower(client, _path(args.name, stream=True), stop_at_complete=False, give_up_s=60.0)
    if is_tty(sys.stdout):
        return _follow_on_terminal(follower, args.name, sys.stdout, colour)
    return _follow_in_pipe(follower, args.name, sys.stdout)


def _follow_on_terminal(follower: Follower, name: str, out: IO[str], colour: bool) -> int:
    mirror = ScreenMirror()
    out.write("\x1b[?1049h\x1b[H\x1b[2J")
    out.flush()
    try:
        for event in follower:
            if event.event not in ("snapshot", "diff", "no_screen"):
                continue
            changed = mirror.apply(event.event, json.loads(event.data))
            _draw(out, mirror, changed, name, colour)
    except KeyboardInterrupt:
        pass
    finally:
        out.write("\x1b[0m\x1b[?25h\x1b[?1049l")
        out.flush()
    return EXIT_OK


def _draw(out: IO[str], mirror: ScreenMirror, changed: list[int] | None, name: str, colour: bool) -> None:
    size = shutil.get_terminal_size((80, 24))
    parts = ["\x1b[?25l"]
    if changed is None:
        parts.append("\x1b[0m\x1b[H\x1b[2J")
    if not mirror.present:
        parts.append(f"\x1b[H{name}: no screen (yet) in run {mirror.run}")
        out.write("".join(parts))
        out.flush()
        return
    rows = range(min(mirror.rows, size.lines)) if changed is None else changed
    for row in rows:
        if row >= size.lines:
            continue
        text = mirror.ansi[row] if colour else mirror.text[row]
        parts.append(f"\x1b[{row + 1};1H\x1b[0m\x1b[2K" + cut_ansi(text, size.columns))
    if size.lines > mirror.rows:
        status = f" {name} · run {mirror.run} · {mirror.cols}x{mirror.rows} · Ctrl-C to stop following"
        parts.append(f"\x1b[{mirror.rows + 1};1H\x1b[0m\x1b[2K\x1b[2m{status[:size.columns]}\x1b[0m")
    x, y = mirror.cursor["x"], mirror.cursor["y"]
    if mirror.cursor.get("visible") and x < size.columns and y < size.lines:
        parts.append(f"\x1b[{y + 1};{x + 1}H\x1b[?25h")
    out.write("".join(parts))
    out.flush()


def _follow_in_pipe(follower: Follower, name: str, out: IO[str]) -> int:
    mirror = ScreenMirror()
    printed: tuple[Any, ...] | None = None
    try:
        for event in follower:
            if event.event not in ("snapshot", "diff", "no_screen"):
                continue
            mirror.apply(event.event, json.loads(event.data))
            shown = (mirror.run, mirror.present, *mirror.text)
            if shown == printed:
                continue  # only the cursor moved
            printed = shown
            if not mirror.present:
                out.write(f"--- {name}: no screen in run {mirror.run}\n")
            else:
                out.write(f"--- {name}: run {mirror.run}, screen {mirror.seq}, {mirror.cols}x{mirror.rows}\n")
                out.write("".join(row + "\n" for row in mirror.text))
            out.flush()
    except KeyboardInterrupt:
        pass
    return EXIT_OK
