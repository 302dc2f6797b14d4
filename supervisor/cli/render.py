"""How the command line shows things: events as lines, notes and progress on stderr, tables.

Agent output goes to stdout and nothing else does; notes, progress and extractions go to
stderr. Colours only on a terminal (or with ``--color always``), never with ``NO_COLOR``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import IO, Any

from ..client import SSEEvent
from ..states import RUNNING_STATES, AgentState
from .conventions import EXIT_FAILURE, PROG

#: States of an agent with a live process, as the API writes them.
RUNNING = frozenset(state.value for state in RUNNING_STATES)

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
YELLOW = "\x1b[33m"
RED = "\x1b[31m"
CYAN = "\x1b[36m"
ERASE_LINE = "\r\x1b[K"


def is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def colour_wanted(choice: str, stream: IO[str]) -> bool:
    """``--color``: ``auto`` means a terminal that is not dumb, and no ``NO_COLOR``."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return is_tty(stream) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class Status:
    """One line of progress on stderr ("connecting...", "replaying 1,200 / 5,000"), redrawn in
    place on a terminal; elsewhere only ``note`` lines are written, so logs stay readable.
    """

    def __init__(self, err: IO[str]) -> None:
        self.err = err
        self.tty = is_tty(err)
        self.colour = self.tty and "NO_COLOR" not in os.environ
        self._shown = False
        self._last = 0.0

    def show(self, text: str, throttle: float = 0.0) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if throttle and now - self._last < throttle:
            return
        self._last = now
        self.err.write(ERASE_LINE + self._paint(DIM, text))
        self.err.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.err.write(ERASE_LINE)
            self.err.flush()
            self._shown = False

    def note(self, text: str, style: str = DIM) -> None:
        self.clear()
        self.err.write(self._paint(style, f"{PROG}: {text}") + "\n")
        self.err.flush()

    def _paint(self, style: str, text: str) -> str:
        return f"{style}{text}{RESET}" if self.colour else text


def exit_code(data: dict[str, Any]) -> int:
    """A finished run's status as a shell reports it: the exit code, or 128 + the signal."""
    if data.get("exit_code") is not None:
        return int(data["exit_code"])
    name = data.get("signal")
    if name:
        try:
            return 128 + int(signal.Signals[str(name)])
        except KeyError:
            return 128 + 15
    return EXIT_FAILURE  # failed to start, or lost with the server that ran it


def describe_end(data: dict[str, Any]) -> str:
    state = data.get("state", AgentState.EXITED.value)
    if data.get("signal"):
        how = f"{state} (killed by {data['signal']})"
    elif data.get("exit_code") is not None:
        how = f"{state} with code {data['exit_code']}"
    else:
        how = f"{state}" + (f": {data['reason']}" if data.get("reason") else "")
    facts = []
    if data.get("lines") is not None:
        facts.append(f"{data['lines']} line" + ("" if data["lines"] == 1 else "s"))
    if data.get("extractions"):
        facts.append(f"{data['extractions']} extractions")
    if data.get("duration_s") is not None:
        facts.append(duration(float(data["duration_s"])))
    return how + (f" ({', '.join(facts)})" if facts else "")


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


class Renderer:
    """Writes events as a person (or a pipe) wants them.

    Text mode: each log line once on ``out``. On a terminal, a partial line (a prompt waiting
    for its newline) is drawn and redrawn in place until its final version replaces it; in a
    pipe partial lines are skipped, since their final version always follows. A line the agent
    redrew in place (``redraw``) is redrawn in place on a terminal when it is still on screen
    (one row each, since it was printed), else printed again, as in a pipe. Colours are kept
    or stripped (the event's ``plain``). A settled screen of a full-screen program (a
    ``screen`` event) is a frame of its rows. Extractions, state changes and the end of a run
    are notes on stderr. JSON mode: every event's envelope, one per line, nothing else on stdout.
    """

    def __init__(self, out: IO[str], status: Status, *, colour: bool, json_mode: bool = False,
                 show_names: bool = False, quiet: bool = False, announce_runs: bool = False) -> None:
        self.out = out
        self.status = status
        self.colour = colour
        self.json_mode = json_mode
        self.show_names = show_names
        self.quiet = quiet
        self.redraw = is_tty(out) and not show_names
        self._partial: tuple[str, Any, Any] | None = None  # (agent, run, line_num) on screen
        # The last final lines printed, (key, cells), for redraws in place on a terminal.
        self._printed: deque[tuple[tuple[str, Any, Any], int]] = deque(maxlen=500)
        self.complete: dict[str, Any] | None = None
        self.lines = 0
        self._started: set[str] = set()
        #: Note every run's start (``tail``), not only the ones after the first seen (``run``).
        self.announce_runs = announce_runs
        # A partial line not drawn (not a terminal) and not completed yet: printed by finish()
        # when nothing completes it, so that a prompt that waits is shown (agent, run, line, text).
        self._undrawn: tuple[tuple[str, Any, Any], str] | None = None

    def wire(self, event: SSEEvent) -> None:
        """An event from a stream, including the ones that exist only on the wire."""
        if event.event in ("connected", "ping"):
            return
        if event.event == "reset":
            info = json_or(event.data, {})
            if self.json_mode:
                self._emit_json(json.dumps({"type": "reset", "data": info}))
            if info.get("missed"):
                self.status.note(f"{info['missed']} earlier events are no longer kept; "
                                 f"continuing from event {info.get('first_available')}",
                                 YELLOW)
            return
        if event.event == "error" and event.id is None:
            reason = json_or(event.data, {}).get("reason", event.data)
            self.status.note(f"the server dropped this stream ({reason}); resuming", YELLOW)
            return
        envelope = json_or(event.data, None)
        if isinstance(envelope, dict):
            self.envelope(envelope, event.data)

    def envelope(self, envelope: dict[str, Any], raw: str | None = None) -> None:
        """One event of an agent's history (``raw``: its JSON as received)."""
        kind = envelope.get("type")
        data = envelope.get("data") or {}
        if self.json_mode:
            self._emit_json(raw if raw is not None else json.dumps(envelope))
            if kind == "complete":
                self.complete = data
            return
        name = str(envelope.get("agent_name", ""))
        if kind == "log":
            self._log(name, data)
        elif kind == "extraction":
            self._extraction(name, data)
        elif kind == "screen":
            self._screen(name, data)
        elif kind == "state":
            self._state(name, data)
        elif kind == "error":
            self.status.note(f"{name}: {data.get('message', data.get('code', 'error'))}", RED)
        elif kind == "complete":
            self.complete = data
            if not self.quiet:
                self.status.note(f"{name} {describe_end(data)}")
        elif kind == "waiting_input":
            self._waiting(name, data)
        elif kind == "agent_added" and not self.quiet:
            self.status.note(f"agent {data.get('agent', {}).get('name', '?')} added")
        elif kind == "agent_removed" and not self.quiet:
            self.status.note(f"agent {data.get('name', '?')} removed")

    def _emit_json(self, text: str) -> None:
        self.status.clear()
        self.out.write(text + "\n")
        self.out.flush()

    def _log(self, name: str, data: dict[str, Any]) -> None:
        line = str(data.get("line", ""))
        if not self.colour:
            line = str(data.get("plain", line))
        if self.show_names:
            prefix = f"{name} | "
            line = (f"{CYAN}{prefix}{RESET}" if self.colour else prefix) + line
        key = (name, data.get("run"), data.get("line_num"))
        if data.get("partial"):
            if not self.redraw:
                self._undrawn = (key, line) if str(data.get("line", "")) else None
                return
            if self._partial is not None and self._partial != key:
                self.out.write("\n")  # another line started: leave the old one as it was
            self.status.clear()
            self.out.write(ERASE_LINE + line + (RESET if self.colour else ""))
            self.out.flush()
            self._partial = key
            return
        self.status.clear()
        if self._undrawn is not None and self._undrawn[0] == key:
            self._undrawn = None
        if data.get("redraw") and self._redraw_in_place(key, line):
            return
        if self._partial is not None:
            self.out.write(ERASE_LINE if self._partial == key else "\n")
            self._partial = None
        self.out.write(line + (RESET if self.colour and "\x1b" in line else "") + "\n")
        self.out.flush()
        if not data.get("redraw"):
            self.lines += 1
        if self.redraw:
            self._printed.append((key, len(str(data.get("plain", data.get("line", ""))))))

    def _screen(self, name: str, data: dict[str, Any]) -> None:
        """A settled screen (a full-screen program's output is its screen's, not lines): a frame
        of its rows on stdout, headed as ``screen --follow`` heads one in a pipe, the blank
        rows at the bottom left out."""
        rows = [str(row) for row in data.get("text") or []]
        while rows and not rows[-1].strip():
            rows.pop()
        prefix = (f"{CYAN}{name} | {RESET}" if self.colour else f"{name} | ") if self.show_names else ""
        final = ", final" if data.get("final") else ""
        head = f"--- {name}: run {data.get('run', '?')}, screen {data.get('seq', '?')}, " \
               f"{data.get('cols', '?')}x{data.get('rows', '?')}{final}"
        self.status.clear()
        if self._partial is not None:
            self.out.write("\n")
            self._partial = None
        self.out.write("".join(f"{prefix}{row}\n" for row in [head, *rows]))
        self.out.flush()
        if self.redraw:
            self._printed.clear()  # the rows printed before are no longer where a redraw expects

    def _redraw_in_place(self, key: tuple[str, Any, Any], line: str) -> bool:
        """Draw ``line`` over the row that printed ``key``, if it is on screen and every row
        since held one line (none wrapped); the cursor comes back where it was."""
        if not self.redraw:
            return False
        size = shutil.get_terminal_size((80, 24))
        up = 0
        for printed, cells in reversed(self._printed):
            up += 1
            if cells > size.columns or up >= size.lines:
                return False
            if printed == key:
                self.out.write(f"\x1b7\x1b[{up}A\r\x1b[2K{line}{RESET if self.colour else ''}\x1b8")
                self.out.flush()
                return True
        return False

    def _extraction(self, name: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        self._end_partial()
        who = f"{name}: " if self.show_names else ""
        value = data.get("value")
        text = f"» {who}{data.get('name')} = {value!s}" + (
            f"  (line {data['line_num']})" if data.get("line_num") is not None else "")
        err = self.status
        err.clear()
        err.err.write((f"{BOLD}{YELLOW}{text}{RESET}" if err.colour else text) + "\n")
        err.err.flush()

    def _state(self, name: str, data: dict[str, Any]) -> None:
        state = data.get("state")
        if self.quiet:
            return
        if state == AgentState.STARTING:
            if self.announce_runs:
                self._end_partial()
                self.status.note(f"{name}: run {data.get('run', '?')} starting"
                                 + (f" ({data['reason']})" if data.get("reason") else ""))
            elif name in self._started:  # a restart seen live, or the next run in a history
                self.status.note(f"{name}: starting again (run {data.get('run', '?')})")
            self._started.add(name)
        elif state == AgentState.BACKOFF:
            self.status.note(f"{name}: ended; restarting in {data.get('restart_in_s', '?')}s "
                             f"(attempt {data.get('attempt', '?')})", YELLOW)
        elif state == AgentState.FAILED:
            self.status.note(f"{name}: could not start: {data.get('reason', '')}", RED)
        elif state == AgentState.LOST:
            self.status.note(f"{name}: lost ({data.get('reason', 'the server died')})", YELLOW)

    def _waiting(self, name: str, data: dict[str, Any]) -> None:
        """The run waits at a prompt: say so (the prompt itself is the partial line)."""
        if self.quiet or not data.get("waiting_input"):
            return
        self._end_partial()
        self.status.note(f"{name} waits for input: {data.get('prompt', '')!r} (answer with:"
                         f" {PROG} send {name} TEXT)", YELLOW)

    def _end_partial(self) -> None:
        if self._partial is not None and is_tty(self.status.err) and self.redraw:
            # stderr shares the screen: finish the partial line so the note does not overwrite it
            self.out.write("\n")
            self.out.flush()
            self._partial = None

    def finish(self) -> None:
        """Leave the terminal on a fresh line (a partial line may still be on screen); print a
        pending prompt that was not drawn (not a terminal): it is the last thing the agent said."""
        if self._undrawn is not None:
            self.status.clear()
            self.out.write(self._undrawn[1] + (RESET if self.colour and "\x1b" in self._undrawn[1] else "") + "\n")
            self.out.flush()
            self._undrawn = None
        if self._partial is not None:
            self.out.write("\n")
            self.out.flush()
            self._partial = None
        self.status.clear()


def json_or(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default



def table(rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> str:
    """Columns padded to their widest cell; columns in ``right`` aligned right (numbers)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    aligned = set(right)
    out = []
    for row in rows:
        cells = [cell.rjust(widths[i]) if i in aligned else cell.ljust(widths[i])
                 for i, cell in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def uptime_or_exit(agent: dict[str, Any]) -> str:
    if agent.get("state") in RUNNING:
        return duration(float(agent.get("duration_s") or 0.0))
    if agent.get("signal"):
        return str(agent["signal"])
    if agent.get("exit_code") is not None:
        return f"exit {agent['exit_code']}"
    return "-"



def usage_cells(usage: Any) -> tuple[str, str, str]:
    """CPU, MEM and PROCS of an agent's whole process tree (its ``usage``; ``-`` when nothing of
    it runs)."""
    if not isinstance(usage, dict):
        return ("-", "-", "-")
    cpu = usage.get("cpu_percent")
    return (f"{cpu:.1f}%" if isinstance(cpu, (int, float)) else "-",
            byte_size(float(usage.get("rss_bytes") or 0)), str(usage.get("processes", "-")))


def byte_size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"

