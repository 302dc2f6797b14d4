"""An agent's live screen: started by the ``screen`` setting, fed in slices without holding the
hub, settled into ``screen`` events, read by the extractors; and the printed lines of a screen.

The LiveScreen alone runs in this process's hub; the agents are real programs under a real PTY
(the in-process registry). Waits are on conditions (``gwait`` lets the hub run).
"""
from __future__ import annotations

import sys
from typing import Any

import gevent
import pytest

from supervisor import events
from supervisor.config import Config
from supervisor.registry import Registry
from supervisor.screen import VirtualScreen
from supervisor.screen.emulator import ScreenLine
from supervisor.screen.live import SLICE_BYTES, LiveScreen
from supervisor.screen.text import printed_lines

from support.agents import history
from support.waiting import gwait

PY = sys.executable

#: A full-screen program: enters the alternate screen, draws a title and a URL the way ratatui
#: does (row by row, each row to the last column, the same indentation), waits, leaves.
URL = "https://auth.example.com/oauth/authorize?response_type=code&client_id=app_x&state=abc123"
FULL_SCREEN = rf"""
import sys, time
w = sys.stdout.write
w("plain line https://line.example.com/x\n"); sys.stdout.flush()
w("\x1b[?1049h\x1b[H\x1b[2J\x1b[1;3HFinish signing in via your browser")
url = {URL!r}
for i in range(0, len(url), 38):
    w("\x1b[%d;3H" % (3 + i // 38) + url[i:i + 38])
sys.stdout.flush()
sys.stdin.readline()
w("\x1b[?1049lbye\n"); sys.stdout.flush()
"""


class Recorder:
    """The ``on_settle`` of a LiveScreen under test: what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], list[ScreenLine]]] = []

    def __call__(self, data: dict[str, Any], lines: list[ScreenLine]) -> None:
        self.calls.append((data, lines))


# --------------------------------------------------------------------------- the LiveScreen alone


@pytest.mark.parametrize(("mode", "has_screen"), [("auto", False), ("on", True), ("off", False)])
def test_a_line_program_gets_a_screen_only_when_asked(mode: str, has_screen: bool) -> None:
    """Under auto, output that never enters the alternate screen starts no emulator; on starts
    one with the run; off never does."""
    live = LiveScreen(mode, Recorder())
    live.start_run(1, 40, 10)
    live.feed(b"hello\r\n\x1b[31mred\x1b[0m\r\n" * 100)
    assert (live.current is not None) is has_screen
    if has_screen:
        assert live.current is not None and "red" in live.current.snapshot()["text"]


def test_auto_starts_the_screen_at_the_alternate_screen_even_when_cut_in_two() -> None:
    """The screen starts with the sequence that enters the alternate screen, split between two
    chunks or not, and shows what is drawn from there on; off never starts one."""
    for cut in range(1, 8):
        live = LiveScreen("auto", Recorder())
        live.start_run(1, 30, 5)
        data = b"before\r\n\x1b[?1049h\x1b[2;4Hdrawn"
        at = data.index(b"\x1b[?1049h") + cut
        live.feed(data[:at])
        live.feed(data[at:])
        assert live.current is not None and live.alternate
        assert live.current.snapshot()["text"][1] == "   drawn"
    off = LiveScreen("off", Recorder())
    off.start_run(1, 30, 5)
    off.feed(b"\x1b[?1049hdrawn")
    assert off.current is None


def test_pieces_cut_the_output_where_the_alternate_screen_switches() -> None:
    """Output is cut at each switch to or from the alternate screen, each piece with whether
    it is full-screen; without a switch it is one piece; with screen off never full-screen."""
    live = LiveScreen("auto", Recorder())
    live.start_run(1, 20, 4)
    data = b"line\r\n\x1b[?1049hdrawn\x1b[?1049lafter\r\n"
    assert live.pieces(data) == [(b"line\r\n", False), (b"\x1b[?1049hdrawn", True), (b"\x1b[?1049lafter\r\n", False)]
    live.feed(b"\x1b[?1049h")
    assert live.pieces(b"more") == [(b"more", True)]
    off = LiveScreen("off", Recorder())
    assert off.pieces(data) == [(data, False)]


@pytest.mark.slow
def test_feeding_a_megabyte_lets_the_hub_run_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """A megabyte of full-screen output is fed slice by slice, and other greenlets run between
    the slices: the hub is never held for the whole chunk. (With HOLD_S at 0 the feed yields
    after every slice, so the count does not depend on the machine's speed.)"""
    from supervisor.screen import live as live_module

    monkeypatch.setattr(live_module, "HOLD_S", 0.0)
    live = LiveScreen("on", Recorder())
    live.start_run(1, 120, 40)
    frame = b"".join(b"\x1b[%d;1H\x1b[3%dmrow %d " % (r, r % 8, r) + b"x" * 90 for r in range(1, 41))
    data = frame * (1_000_000 // len(frame))
    turns = 0

    def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            gevent.sleep(0)

    ticker = gevent.spawn(other)
    gevent.sleep(0)
    try:
        start = turns
        live.feed(data)
        slices = len(data) // SLICE_BYTES
        assert turns - start >= slices // 2, (turns - start, slices)
    finally:
        ticker.kill()
    assert live.current is not None and live.current.snapshot()["text"][39].startswith("row 40")


def test_a_screen_settles_when_quiet_and_at_the_end() -> None:
    """Quiet for settle_s: one settle with the text, the rows that changed and the new printed
    lines; no settle when only the cursor moved; the end of the run settles once more."""
    recorder = Recorder()
    live = LiveScreen("on", recorder, settle_s=0.05)
    live.start_run(3, 20, 4)
    live.feed(b"one\r\ntwo")
    gwait(lambda: recorder.calls, 5, "the first settle")
    data, lines = recorder.calls[0]
    assert (data["run"], data["text"], data["changed"], data["alternate"]) == (3, ["one", "two", "", ""], [0, 1, 2, 3], False)
    assert [line.text for line in lines] == ["one", "two"]
    live.feed(b"\x1b[1;1H")  # the cursor moves, the text does not change
    gevent.sleep(0.2)
    assert len(recorder.calls) == 1
    live.feed(b"\x1b[3;1Hthree")
    live.finish()
    data, lines = recorder.calls[-1]
    assert data["final"] and data["changed"] == [2] and [line.text for line in lines] == ["three"]


def test_a_screen_that_keeps_changing_settles_at_most_every_settle_max_s() -> None:
    """A spinner never lets the screen be quiet; it settles anyway, every settle_max_s."""
    recorder = Recorder()
    live = LiveScreen("on", recorder, settle_s=0.2, settle_max_s=0.3)
    live.start_run(1, 20, 4)
    for i in range(40):
        live.feed(b"\x1b[1;1H%d" % i)
        gevent.sleep(0.02)
    assert 1 <= len(recorder.calls) <= 4, len(recorder.calls)


def test_watchers_hear_of_changes_and_new_runs() -> None:
    """A watcher is called after a change, when a run starts, and no more once it stops."""
    live = LiveScreen("on", Recorder())
    calls: list[int] = []
    stop = live.watch(lambda: calls.append(1))
    live.start_run(1, 20, 4)
    live.feed(b"x")
    assert len(calls) == 2
    stop()
    live.feed(b"y")
    assert len(calls) == 2


# --------------------------------------------------------------------------- printed lines


def test_printed_lines_join_rows_a_program_drew_up_to_the_margin() -> None:
    """A URL drawn row by row to the last column at one indentation (ratatui) is one line; so
    is one the terminal wrapped; a frame's right edge and a short row end a line."""
    screen = VirtualScreen(40, 12)
    screen.feed(b"\x1b[1;3HFinish signing in via your browser")
    for i in range(0, len(URL), 38):
        screen.feed(b"\x1b[%d;3H" % (3 + i // 38) + URL[i:i + 38].encode())
    screen.feed(b"\x1b[7;1H\xe2\x94\x82" + b"x" * 38 + b"\xe2\x94\x82")  # │xxx│: a frame
    screen.feed(b"\x1b[8;1H" + b"y" * 10)
    screen.feed(b"\x1b[10;1Hsee " + URL.encode())  # wrapped by the terminal
    lines = [(line.first, line.last, line.text) for line in printed_lines(screen) if line.text.strip()]
    assert lines == [
        (0, 0, "  Finish signing in via your browser"),
        (2, 4, "  " + URL),
        (6, 6, "│" + "x" * 38 + "│"),
        (7, 7, "y" * 10),
        (9, 11, "see " + URL),
    ]


def test_printed_lines_join_a_line_that_goes_on_at_the_left_edge() -> None:
    """ratatui wraps a paragraph line whose indentation is its own leading spaces at the left
    edge (codex's sign-in URL): the rows after the first start at column 0 and are joined; a
    row that goes on further right than the line began is not, nor one after a short row."""
    screen = VirtualScreen(40, 10)
    text = "  " + URL
    for i, start in enumerate(range(0, len(text), 40)):
        screen.feed(b"\x1b[%d;1H" % (1 + i) + text[start:start + 40].encode())
    screen.feed(b"\x1b[5;1H" + b"z" * 40 + b"\x1b[6;5Hindented further")
    screen.feed(b"\x1b[8;1Hshort\x1b[9;1Hnext")
    lines = [(line.first, line.last, line.text) for line in printed_lines(screen) if line.text.strip()]
    assert lines == [(0, 2, text), (4, 4, "z" * 40), (5, 5, "    indented further"), (7, 7, "short"), (8, 8, "next")]


# --------------------------------------------------------------------------- agents


@pytest.fixture
def quick(config: Config) -> Config:
    """Settings with a short settle time."""
    import dataclasses

    return dataclasses.replace(config, screen_settle_s=0.2)


@pytest.fixture
def quick_registry(quick: Config) -> Any:
    registry = Registry(quick)
    try:
        yield registry
    finally:
        registry.shutdown(grace=1.0)


def test_a_full_screen_agent_gets_screen_events_and_screen_extractions(quick_registry: Registry) -> None:
    """Under auto a full-screen program gets a screen; its settled screen is a ``screen``
    event in the agent's history; the extractors read the URL drawn over three rows whole, and
    read no lines while the alternate screen is up (only the fragments of its redraws); at the
    end a final screen event comes before the state change."""
    agent = quick_registry.create({"name": "tui", "command": [PY, "-c", FULL_SCREEN], "cols": 40, "rows": 8})
    gwait(lambda: history(quick_registry, "tui", events.SCREEN), 10, "a screen event")
    screen = history(quick_registry, "tui", events.SCREEN)[0].data
    assert screen["alternate"] and screen["text"][0] == "  Finish signing in via your browser"
    assert agent.screen.current is not None and agent.screen.current.snapshot()["text"] == screen["text"]
    agent.write("\n")
    assert agent.wait(10)
    found = [(e.data["name"], e.data["value"], e.data.get("source"), e.data.get("row"))
             for e in history(quick_registry, "tui", events.EXTRACTION)]
    assert ("url", "https://line.example.com/x", None, None) in found  # a line, before the screen
    assert ("url", URL, "screen", 2) in found
    assert [value for name, value, _, _ in found if name == "url"] == ["https://line.example.com/x", URL]
    kinds = [e.type for e in history(quick_registry, "tui")]
    assert kinds[-4:] == ["log", events.SCREEN, "state", "complete"] or kinds[-3:] == [events.SCREEN, "state", "complete"]
    last = history(quick_registry, "tui", events.SCREEN)[-1].data
    assert last["final"] and last["text"][0] == "bye" and not last["alternate"]
    assert agent.extractions == len(found)


def test_screen_off_and_on_per_agent(quick_registry: Registry) -> None:
    """``screen: off`` gives a full-screen program no screen (and its lines are extracted);
    ``screen: on`` gives a line program one; a bad value is refused."""
    from supervisor.exceptions import InvalidRequest

    off = quick_registry.create({"name": "off", "command": [PY, "-c", FULL_SCREEN], "screen": "off",
                                 "cols": 40, "rows": 8})
    gwait(lambda: any("Finish" in e.data["line"] for e in history(quick_registry, "off", "log")), 10, "its lines")
    off.write("\n")
    assert off.wait(10) and off.screen.current is None
    assert history(quick_registry, "off", events.SCREEN) == []
    on = quick_registry.create({"name": "on", "command": [PY, "-c", "print('hi')"], "screen": "on"})
    assert on.wait(10) and on.screen.current is not None
    assert history(quick_registry, "on", events.SCREEN)[-1].data["text"][0] == "hi"
    with pytest.raises(InvalidRequest):
        quick_registry.create({"name": "bad", "command": [PY, "-c", "1"], "screen": "sometimes"})


def test_the_screen_is_resized_with_the_pty(quick_registry: Registry) -> None:
    """A resize of the agent's terminal resizes its screen, and the program's redraw after
    SIGWINCH lands on it."""
    code = ("import os, signal, sys\n"
            "def draw(*_):\n"
            "    c, r = os.get_terminal_size(1)\n"
            "    sys.stdout.write(f'\\x1b[H\\x1b[2Jsize {c}x{r}'); sys.stdout.flush()\n"
            "signal.signal(signal.SIGWINCH, draw)\n"
            "sys.stdout.write('\\x1b[?1049h'); draw()\n"
            "sys.stdin.readline()\n")
    agent = quick_registry.create({"name": "winch", "command": [PY, "-c", code], "cols": 50, "rows": 10})
    gwait(lambda: agent.screen.current is not None and "size 50x10" in agent.screen.current.snapshot()["text"][0],
          10, "the first size")
    agent.resize(70, 12)
    assert agent.screen.current is not None
    assert (agent.screen.current.cols, agent.screen.current.rows) == (70, 12)
    gwait(lambda: agent.screen.current is not None and agent.screen.current.snapshot()["text"][0] == "size 70x12",
          10, "the redraw")
    agent.write("\n")
    assert agent.wait(10)
