"""The tmux oracle for the virtual-screen tests: record a program's bytes, replay them in tmux.

"What a terminal shows" is decided by tmux, fed the same bytes at the same size:

- :func:`record` runs a program under a real PTY of a given size and keeps every byte it writes,
  answering its terminal queries the way the supervisor does (:class:`TerminalResponder`) and
  typing scripted keys once the output it waits for has appeared.
- :class:`ReplayPane` is a :class:`support.tmux.TmuxPane` (a private tmux server) that runs
  ``fixtures/screen/replay.py`` in a pane of that size to write the recorded bytes unchanged, and
  waits until tmux has processed them (a title marker written after them shows up in
  ``#{pane_title}``). ``capture()`` is ``tmux capture-pane -p`` row by row; ``cells()`` is
  ``capture-pane -p -e`` parsed into characters and styles, for comparing colours.

Every wait is a condition with a deadline, and every process started here is killed before the
function or the ``with`` block returns. tmux is a Debian package: :func:`support.tmux.require_tmux`
skips the test where it is missing and fails it under ``CI=true``, where the test command installs it.
"""
from __future__ import annotations

import itertools
import os
import re
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ROOT
from .tmux import TmuxPane

FIXTURES = ROOT / "tests" / "fixtures" / "screen"
REPLAY = FIXTURES / "replay.py"

_names = itertools.count()


# --- recording a program under a PTY ------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """Wait until ``expect`` appears in the output written since the previous step, then type
    ``send`` (nothing if empty)."""

    expect: bytes
    send: bytes = b""


def record(argv: Sequence[str], cols: int, rows: int, steps: Iterable[Step] = (), *,
           env: dict[str, str] | None = None, quit_keys: bytes = b"", timeout: float = 15.0) -> bytes:
    """Everything ``argv`` writes to a ``cols`` x ``rows`` PTY until the last step is met (or,
    with no steps, until it exits), its terminal queries answered as the supervisor answers them.

    The recording ends at the read in which the last step's text arrived; afterwards the program
    is sent ``quit_keys`` (if any) and its process group is killed if it is still there. Raises
    ``AssertionError`` when a step is not met before the deadline.
    """
    from ptyprocess import PtyProcess

    from supervisor.terminal import TerminalResponder

    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "TERM": "xterm-256color",
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "COLUMNS": str(cols),
        "LINES": str(rows),
        **(env or {}),
    }
    responder = TerminalResponder(cols, rows)
    proc = PtyProcess.spawn(list(argv), env=full_env, dimensions=(rows, cols))
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        pending = list(steps)
        mark = 0  # where the output of the current step starts
        while True:
            if pending and out.find(pending[0].expect, mark) >= 0:
                step = pending.pop(0)
                mark = len(out)
                if not pending:
                    break
                if step.send:
                    os.write(proc.fd, step.send)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waiting = pending[0].expect if pending else b"the end of output"
                raise AssertionError(f"{argv[0]}: timed out after {timeout} s waiting for {waiting!r}; "
                                     f"output so far ends {bytes(out[-300:])!r}")
            ready, _, _ = select.select([proc.fd], [], [], min(remaining, 0.5))
            if not ready:
                continue
            try:
                chunk = os.read(proc.fd, 65536)
            except OSError:  # EIO: the program and everything holding the PTY are gone
                chunk = b""
            if not chunk:
                if pending:
                    raise AssertionError(f"{argv[0]} ended before {pending[0].expect!r}; "
                                         f"output ends {bytes(out[-300:])!r}")
                break
            out += chunk
            reply = responder.feed(chunk)
            if reply:
                os.write(proc.fd, reply)
        return bytes(out)
    finally:
        _end(proc, quit_keys)


def _end(proc: Any, quit_keys: bytes) -> None:
    """Stop a recorded program: its quit keys, then SIGKILL to its group; reap it, with a deadline."""
    if quit_keys and proc.isalive():
        try:
            os.write(proc.fd, quit_keys)
        except OSError:
            pass
    deadline = time.monotonic() + 2.0
    while proc.isalive() and time.monotonic() < deadline:
        _drain(proc.fd)
    if proc.isalive():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5.0
    while proc.isalive():
        if time.monotonic() > deadline:
            raise AssertionError(f"recorded program {proc.pid} did not end")
        _drain(proc.fd)
    proc.close(force=True)


def _drain(fd: int) -> None:
    """Read and drop what the program writes while it quits, so it never blocks on a full PTY."""
    try:
        if select.select([fd], [], [], 0.05)[0]:
            os.read(fd, 65536)
    except OSError:
        time.sleep(0.01)  # the PTY is closed: only the exit is left to see


# --- tmux as the oracle ------------------------------------------------------------------------

class ReplayPane(TmuxPane):
    """A private tmux pane showing ``data`` (recorded bytes) in ``cols`` x ``rows``, written
    unchanged by ``fixtures/screen/replay.py``; use as a context. ``feed()`` writes more.

    ``capture()``: the rows' text with line-drawing cells shown as lines; ``plain_capture()``:
    ``capture-pane -p`` exactly; ``cells()``: each row as ``(char, style)`` pairs.
    """

    def __init__(self, data: bytes, cols: int, rows: int, workdir: Path, timeout: float = 10.0) -> None:
        self.path = workdir / f"replay-{os.getpid()}-{next(_names)}.raw"
        self.path.write_bytes(data)
        self.marker = f"replay-done-{self.path.stem}"
        self.fifo = self.path.with_suffix(".fifo")
        os.mkfifo(self.fifo)
        self._feeds = 0
        self._fifo: Any = None
        try:
            super().__init__([sys.executable, str(REPLAY), str(self.path), self.marker, str(self.fifo)], cols, rows,
                             status=False, timeout=timeout)
            self.wait_info(lambda info: info["pane_title"] == self.marker, "the replayed bytes")
            size = self.info()
            assert (size["pane_width"], size["pane_height"]) == (str(cols), str(rows)), size
            self._fifo = self._open_fifo()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ReplayPane:
        return self

    def _open_fifo(self) -> Any:
        """Open the FIFO for writing once the replayer has opened it for reading (non-blocking
        tries until the deadline: a plain open would wait forever for a dead replayer)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:  # ENXIO: no reader yet
                if time.monotonic() > deadline:
                    raise AssertionError(f"the replayer did not open its FIFO: {e}") from None
                time.sleep(0.02)
                continue
            os.set_blocking(fd, True)
            return os.fdopen(fd, "w")

    def feed(self, data: bytes) -> None:
        """Write more bytes to the pane, and wait until tmux has processed them."""
        self._feeds += 1
        path = self.path.with_name(f"{self.path.stem}-{self._feeds}.raw")
        path.write_bytes(data)
        self._fifo.write(f"{path}\n")
        self._fifo.flush()
        marker = f"{self.marker}-{self._feeds}"
        self.wait_info(lambda info: info["pane_title"] == marker, "the bytes fed later")

    def close(self) -> None:
        """Close the FIFO, kill the server and the replayer in it, remove the files."""
        if self._fifo is not None:
            self._fifo.close()
            self._fifo = None
        if hasattr(self, "name"):  # the server was started
            super().close()
        for path in (self.path, self.fifo):
            path.unlink(missing_ok=True)

    def capture(self) -> list[str]:
        """The rows' text, as ``capture-pane -p`` prints it but with cells drawn in the DEC
        line-drawing character set shown as the lines they are (``-p`` alone prints such a
        cell as its ASCII letter: ``q`` for ``─``), trailing spaces removed."""
        return [_text(row).rstrip(" ") for row in self.cells()]

    def plain_capture(self) -> list[str]:
        """``capture-pane -p`` exactly (trailing spaces removed)."""
        return super().capture()

    def cells(self) -> list[list[tuple[str, Style]]]:
        """Each row as ``(text, style)`` per cell, from ``capture-pane -p -e``."""
        return ansi_rows(self.capture_escapes(), shift_out=True)


# --- comparing styled rows ---------------------------------------------------------------------

#: A cell's look, normalised so that two ways of writing the same SGR compare equal:
#: (bold, dim, italic, underline, blink, reverse, hidden, strike, fg, bg).
Style = tuple[bool, bool, bool, bool, bool, bool, bool, bool, str, str]
PLAIN: Style = (False,) * 8 + ("", "")

_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_OTHER_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-~])")
_FLAGS = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 7: 5, 8: 6, 9: 7}
_FLAGS_OFF = {22: (0, 1), 23: (2,), 24: (3,), 25: (4,), 27: (5,), 28: (6,), 29: (7,)}



def apply_sgr(style: Style, params: str) -> Style:
    """``style`` after one ``ESC[<params>m``."""
    flags = list(style[:8])
    fg, bg = style[8], style[9]
    parts = [p.split(":")[0] if ":" in p else p for p in (params or "0").split(";")]
    values = [int(p) if p.isdigit() else 0 for p in parts]
    i = 0
    while i < len(values):
        n = values[i]
        i += 1
        if n == 0:
            flags, fg, bg = [False] * 8, "", ""
        elif n in _FLAGS:
            flags[_FLAGS[n]] = True
        elif n in _FLAGS_OFF:
            for f in _FLAGS_OFF[n]:
                flags[f] = False
        elif 30 <= n <= 37:
            fg = f"p{n - 30}"
        elif 90 <= n <= 97:
            fg = f"p{n - 90 + 8}"
        elif 40 <= n <= 47:
            bg = f"p{n - 40}"
        elif 100 <= n <= 107:
            bg = f"p{n - 100 + 8}"
        elif n == 39:
            fg = ""
        elif n == 49:
            bg = ""
        elif n in (38, 48, 58):
            value = ""
            if i < len(values) and values[i] == 5 and i + 1 < len(values):
                value, i = f"p{values[i + 1]}", i + 2
            elif i < len(values) and values[i] == 2 and i + 3 < len(values):
                r, g, b = values[i + 1:i + 4]
                value, i = f"#{r:02x}{g:02x}{b:02x}", i + 4
            if n == 38:
                fg = value
            elif n == 48:
                bg = value
    return (*flags, fg, bg)  # type: ignore[return-value]


def ansi_rows(rows: Sequence[str], shift_out: bool = False) -> list[list[tuple[str, Style]]]:
    """Rows with SGR sequences as ``(text, style)`` per character (a combining mark stays with
    the character before it), trailing spaces dropped, coloured ones too: tmux's capture never
    shows those (a row erased with a background colour ends at its last character there).

    The style carries over from one row to the next, as in tmux's ``-e`` output. With
    ``shift_out``, characters between SO and SI (tmux's way of marking cells of the DEC
    line-drawing set) are translated to the lines they stand for.
    """
    from unicodedata import combining

    from supervisor.screen import DEC_GRAPHICS

    out = []
    style = PLAIN
    graphics = False
    for row in rows:
        cells: list[tuple[str, Style]] = []
        pos = 0
        for m in itertools.chain(_SGR.finditer(row), [None]):
            end = m.start() if m is not None else len(row)
            for ch in _OTHER_ESCAPE.sub("", row[pos:end]):
                if shift_out and ch in "\x0e\x0f":
                    graphics = ch == "\x0e"
                elif cells and (combining(ch) or ch in "\u200d\ufe0f"):
                    cells[-1] = (cells[-1][0] + ch, cells[-1][1])
                else:
                    cells.append((DEC_GRAPHICS.get(ch, ch) if graphics else ch, style))
            if m is None:
                break
            style = apply_sgr(style, m.group(1))
            pos = m.end()
        while cells and cells[-1][0] == " ":
            cells.pop()
        out.append(cells)
    return out


def _text(cells: list[tuple[str, Style]]) -> str:
    return "".join(text for text, _ in cells)


def diff_rows(ours: Sequence[str], theirs: Sequence[str]) -> list[str]:
    """Readable differences between two lists of rows (trailing spaces ignored); empty if equal."""
    out = []
    for i in range(max(len(ours), len(theirs))):
        a = ours[i].rstrip(" ") if i < len(ours) else "<missing>"
        b = theirs[i].rstrip(" ") if i < len(theirs) else "<missing>"
        if a != b:
            out.append(f"row {i}:\n  ours: {a!r}\n  tmux: {b!r}")
    return out


# --- the programs the oracle tests and the benchmark run ---------------------------------------

@dataclass(frozen=True)
class Program:
    """A program to record at ``cols`` x ``rows``: its command, the steps, how to quit it."""

    name: str
    cols: int
    rows: int
    argv: tuple[str, ...]
    steps: tuple[Step, ...] = ()
    quit_keys: bytes = b""
    env: tuple[tuple[str, str], ...] = ()
    setup: Callable[[], object] | None = None  # makes the files the program needs

    def record(self, timeout: float = 15.0) -> bytes:
        if self.setup is not None:
            self.setup()
        return record(self.argv, self.cols, self.rows, self.steps, env=dict(self.env),
                      quit_keys=self.quit_keys, timeout=timeout)


def less_input(path: Path) -> Path:
    """A 200-line file for ``less``: short, wrapping and wide lines."""
    path.write_text("".join(
        f"line {i:04d}: {'lorem ipsum dolor sit amet ' * (i % 4)}{'日本語' if i % 7 == 0 else ''}\n"
        for i in range(200)))
    return path


def programs(workdir: Path) -> list[Program]:
    """Every program of the oracle comparison; ``workdir`` holds the file ``less`` shows."""
    python = sys.executable
    sequences = str(FIXTURES / "sequences.py")
    text = workdir / "less-input.txt"
    return [
        Program("curses", 80, 24, (python, str(FIXTURES / "curses_cells.py")),
                (Step(b"curses-done"),), quit_keys=b"q"),
        Program("curses-small", 50, 16, (python, str(FIXTURES / "curses_cells.py"), "--frames", "75"),
                (Step(b"curses-done"),), quit_keys=b"q"),
        # Page down, three lines down, then a search: scrolling, and a highlighted match.
        Program("less", 80, 24, ("less", str(text)),
                (Step(b"less-input.txt", b" "), Step(b"line 0035", b"jjj"),
                 Step(b"line 0038", b"/line 0077\r"), Step(b"line 0077")),
                quit_keys=b"q", env=(("LESS", ""), ("LESSHISTFILE", "-")), setup=lambda: less_input(text)),
        *(Program(name, 80, 24, (python, sequences, name))
          for name in ("wide", "altscreen", "altscreen-inside", "scroll", "edits", "sgr", "wrap")),
    ]


def transcripts() -> dict[str, bytes]:
    """Raw PTY recordings of real tools (npm, codex exec), by name."""
    folder = ROOT / "tests" / "fixtures" / "transcripts"
    return {p.stem: p.read_bytes() for p in sorted(folder.glob("*.raw"))}
