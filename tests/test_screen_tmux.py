"""The virtual screen against tmux: the same bytes at the same size must show the same screen.

Each program is run under a real PTY and recorded (``support.screen.record``); the bytes go to
a private tmux server and to a :class:`VirtualScreen`, and the two are compared row by row: the
text (``capture-pane -p``, with line-drawing cells shown as lines), the colours and attributes
of every cell (``capture-pane -p -e``), the cursor, its visibility and the alternate screen.

The last tests go through the real server: the program runs as an agent (typed into through
``/input``), and ``GET /api/agents/<name>/screen`` is compared with tmux fed the bytes the
agent wrote (its ``output.log``), at the same size.
tmux is a Debian package that ``scripts/test.sh`` installs; without it these tests are skipped,
and under ``CI=true`` they fail.
"""
from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor import datadir
from supervisor.screen import VirtualScreen

from support.processes import Server
from support.screen import FIXTURES, Program, ReplayPane, ansi_rows, diff_rows, programs, transcripts
from support.tmux import in_ci, require_tmux
from support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

_PROGRAMS = {p.name: p for p in programs(Path("/nonexistent"))}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screen-oracle")


def _screen(data: bytes, cols: int, rows: int, seed: int = 0) -> VirtualScreen:
    """A screen fed ``data`` in chunks of random sizes (a PTY's reads cut anywhere)."""
    screen = VirtualScreen(cols, rows)
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rng.choice((1, 7, 64, 4096))
        screen.feed(data[pos:pos + step])
        pos += step
    return screen


def _compare(screen: VirtualScreen | dict[str, Any], tmux: ReplayPane) -> None:
    """Text, styles, cursor and screen of ``screen`` (or of its snapshot) equal tmux's."""
    snap = screen.snapshot() if isinstance(screen, VirtualScreen) else screen
    want = tmux.capture()
    assert snap["text"] == want, "\n" + "\n".join(diff_rows(snap["text"], want))
    ours_cells, tmux_cells = ansi_rows(snap["ansi"]), tmux.cells()
    for row, (a, b) in enumerate(zip(ours_cells, tmux_cells)):
        assert a == b, f"row {row} styles differ:\n  ours: {a}\n  tmux: {b}"
    info = tmux.info()
    # tmux puts the cursor one past the last column while a wrap is pending; it shows there.
    cursor = (min(int(info["cursor_x"]), tmux.cols - 1), int(info["cursor_y"]))
    assert (snap["cursor"]["x"], snap["cursor"]["y"]) == cursor
    assert snap["cursor"]["visible"] == (info["cursor_flag"] == "1")
    assert snap["alternate"] == (info["alternate_on"] == "1")


def _require(program: Program) -> None:
    require_tmux()
    if shutil.which(program.argv[0]) is None and not Path(program.argv[0]).exists():
        message = f"{program.argv[0]} is missing (apt-get install -y {program.argv[0]})"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.mark.parametrize("name", list(_PROGRAMS))
def test_program_matches_tmux(name: str, workdir: Path) -> None:
    """A curses program, less scrolled, wide characters, the alternate screen, scroll regions,
    edits, colours and wrapping look the same on the virtual screen as in tmux."""
    program = next(p for p in programs(workdir) if p.name == name)
    _require(program)
    data = program.record()
    screen = _screen(data, program.cols, program.rows)
    with ReplayPane(data, program.cols, program.rows, workdir) as tmux:
        _compare(screen, tmux)
    expected = {
        "curses": "Finish signing in via your browser",
        "less": "line 0077",
        "wide": "XY本語abc",
        "altscreen": "prompt> after 1049",
        "altscreen-inside": "still here",
        "scroll": "scrolled whole screen",
        "wrap": "&state=abc",
    }.get(name)
    if expected:  # the recording shows what the case is about, not an empty screen
        assert any(expected in row for row in screen.snapshot()["text"])


@pytest.mark.parametrize("size", [(80, 24), (60, 12)])
@pytest.mark.parametrize("name", sorted(transcripts()))
def test_transcript_matches_tmux(name: str, size: tuple[int, int], workdir: Path) -> None:
    """Real tools' output (npm, codex exec), at a size where long lines wrap and scroll."""
    require_tmux()
    data = transcripts()[name]
    cols, rows = size
    screen = _screen(data, cols, rows, seed=cols)
    with ReplayPane(data, cols, rows, workdir) as tmux:
        _compare(screen, tmux)


def test_codex_welcome_matches_tmux(workdir: Path) -> None:
    """The codex TUI's first screen, recorded from the real CLI (0.169.0) at 100 x 30."""
    require_tmux()
    data = (FIXTURES / "codex-welcome.raw").read_bytes()
    screen = _screen(data, 100, 30)
    with ReplayPane(data, 100, 30, workdir) as tmux:
        _compare(screen, tmux)
    assert any("Welcome to Codex" in row for row in screen.snapshot()["text"])


@pytest.mark.parametrize("size", [(60, 16), (100, 30), (80, 10)])
def test_resize_on_alternate_screen_matches_tmux(size: tuple[int, int], workdir: Path) -> None:
    """Resized as tmux resizes its pane: rows below the cursor go first, then rows from the top;
    rows and columns are cut or padded (the alternate screen is never reflowed)."""
    program = _PROGRAMS["curses"]
    require_tmux()
    data = program.record()
    screen = _screen(data, program.cols, program.rows)
    cols, rows = size
    screen.resize(cols, rows)
    with ReplayPane(data, program.cols, program.rows, workdir) as tmux:
        tmux.resize(cols, rows)
        _compare(screen, tmux)
        # And the program's next frame after the resize is drawn the same way on both.
        more = b"\x1b[2;3H\x1b[1;35mresized\x1b[0m" + b"\n" * 3 + b"tail"
        screen.feed(more)
        tmux.feed(more)
        _compare(screen, tmux)


@pytest.mark.slow
def test_tmux_servers_are_gone(workdir: Path) -> None:
    """Every server the oracle starts is killed, and its socket removed, when the block ends."""
    require_tmux()
    with ReplayPane(b"x", 10, 3, workdir) as tmux:
        socket, pid = tmux.socket_path(), tmux.server_pid
        assert socket.exists() and Path(f"/proc/{pid}").exists()
    assert not socket.exists()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists()


# --- through the server -------------------------------------------------------------------------


def _written(server: Server, name: str) -> bytes:
    """What agent ``name`` wrote in its one run, from its ``output.log`` (after the run's header)."""
    path = datadir.agent_dir(server.data_dir, name) / "output.log"
    raw = path.read_bytes() if path.exists() else b""
    end = raw.find(b" ---\n")
    return raw[end + 5:] if end >= 0 else b""  # nothing yet: the header comes with the first output


def _settled_seq(server: Server, name: str) -> int | None:
    """The seq of the agent's last ``screen`` event."""
    events = server.get(f"/api/agents/{name}/events?limit=10000")["events"]
    seqs = [e["data"]["seq"] for e in events if e["type"] == "screen"]
    return seqs[-1] if seqs else None


def _drive(server: Server, name: str, program: Program) -> None:
    """Type each step's keys through ``/input`` once the output it waits for has come (as
    ``support.screen.record`` does under its own PTY)."""
    mark = 0
    for step in program.steps:
        def arrived(expect: bytes = step.expect, since: int = mark) -> bool:
            return _written(server, name).find(expect, since) >= 0

        wait_for(arrived, 20, 0.02, f"{step.expect!r}")
        mark = len(_written(server, name))
        if step.send:
            response = server.request("POST", f"/api/agents/{name}/input", {"data": step.send.decode()})
            assert response.status == 204


@pytest.mark.slow
@pytest.mark.parametrize("name", ["curses", "less", "wide"])
def test_the_servers_screen_matches_tmux(name: str, server: Server, workdir: Path) -> None:
    """A curses program redrawing only changed cells, less paged, moved and searched, and a
    table of wide and combining characters, each run as an agent: GET /screen shows what tmux
    shows for the same bytes at the same size (text, styles, cursor, alternate screen)."""
    program = next(p for p in programs(workdir) if p.name == name)
    _require(program)
    if program.setup is not None:
        program.setup()
    agent = f"tmux-{name}"
    # The wide table stays on the main screen: a screen from the start. The others enter the
    # alternate screen: the default (auto) starts theirs there.
    server.create(name=agent, command=list(program.argv), cols=program.cols, rows=program.rows,
                  env={"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", **dict(program.env)},
                  **({"screen": "on"} if name == "wide" else {}))
    try:
        _drive(server, agent, program)
        if not program.steps:
            server.wait_state(agent, "exited")
        else:
            # Settled (quiet for a second: its `screen` event has the screen's seq): the
            # program has written what it will before the next key.
            wait_for(lambda: _settled_seq(server, agent) == server.get(f"/api/agents/{agent}/screen")["seq"], 20)
        shown = server.get(f"/api/agents/{agent}/screen")
        data = _written(server, agent)
        assert shown == server.get(f"/api/agents/{agent}/screen"), "the screen changed while being read"
        with ReplayPane(data, program.cols, program.rows, workdir) as tmux:
            _compare(shown, tmux)
    finally:
        if program.quit_keys:
            server.request("POST", f"/api/agents/{agent}/input", {"data": program.quit_keys.decode()})
        server.request("POST", f"/api/agents/{agent}/stop", {"grace_s": 1})
        server.wait_state(agent, "exited")
    expected = {"curses": "frame 039", "less": "line 0077", "wide": "XY本語abc"}[name]
    assert any(expected in row for row in shown["text"])
