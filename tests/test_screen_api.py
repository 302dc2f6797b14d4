"""The screen API against a real server: ``GET /api/agents/<name>/screen`` and its stream.

A snapshot first, then row diffs that, applied in order (:class:`ScreenMirror`), always give the
screen ``GET /screen`` shows; diffs coalesced; a client that stops reading is sent a fresh
snapshot once it reads again, never dropped; a new run is a new snapshot; the checks of every
``/api`` route apply. The programs are tiny Python full-screen programs under the real PTY.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from supervisor.cli.screen import ScreenMirror

from support.processes import Server
from support.sse import SSEEvent, SSEStream
from support.waiting import wait_for

PY = sys.executable

#: Enters the alternate screen, draws a coloured title, then redraws a counter every ``pause``
#: seconds ``count`` times, and waits for a line of input.
COUNTER = r"""
import sys, time
w = sys.stdout.write
w("\x1b[?1049h\x1b[H\x1b[2J\x1b[1;3H\x1b[1;32mcounter\x1b[0m"); sys.stdout.flush()
for i in range({count}):
    w("\x1b[3;1Hvalue %6d" % i); sys.stdout.flush()
    time.sleep({pause})
w("\x1b[5;1Hdone"); sys.stdout.flush()
sys.stdin.readline()
"""


def counter(count: int, pause: float) -> list[str]:
    return [PY, "-u", "-c", COUNTER.format(count=count, pause=pause)]


def screen_events(stream: SSEStream, mirror: ScreenMirror, until: Callable[[ScreenMirror], bool],
                  timeout: float = 15.0) -> list[SSEEvent]:
    """Read screen events into ``mirror`` until ``until(mirror)``; the events read."""
    seen: list[SSEEvent] = []

    def done(event: SSEEvent) -> bool:
        seen.append(event)
        if event.event in ("snapshot", "diff", "no_screen"):
            mirror.apply(event.event, json.loads(event.data))
        return until(mirror)

    stream.until(done, timeout=timeout)
    return seen


def current(server: Server, name: str) -> dict[str, Any]:
    shown: dict[str, Any] = server.get(f"/api/agents/{name}/screen")
    return shown


def test_get_screen_shows_the_screen(server: Server) -> None:
    """``GET /screen``: size, cursor, alternate, seq, the rows' text and colours, as drawn."""
    server.create(name="shape", command=counter(1, 0), cols=30, rows=6)
    wait_for(lambda: (s := current_or_none(server, "shape")) is not None and "done" in s["text"][4], 15)
    shown = current(server, "shape")
    assert (shown["cols"], shown["rows"], shown["alternate"], shown["run"]) == (30, 6, True, 1)
    assert shown["text"] == ["  counter", "", "value      0", "", "done", ""]
    assert shown["ansi"][0] == "  \x1b[0;1;32mcounter\x1b[0m"
    assert shown["cursor"] == {"x": 4, "y": 4, "visible": True} and shown["seq"] > 0
    assert set(shown) >= {"wrapped", "modes"}
    server.request("POST", "/api/agents/shape/input", {"data": "\n"})


def current_or_none(server: Server, name: str) -> dict[str, Any] | None:
    response = server.request("GET", f"/api/agents/{name}/screen")
    shown: dict[str, Any] | None = response.json() if response.status == 200 else None
    return shown


def test_no_screen_is_a_404_with_its_reason(server: Server) -> None:
    """An agent without a screen gets ``404 no_screen`` saying why; an unknown one 404 too."""
    server.create(name="plain", command=[PY, "-c", "print('only lines')"])
    server.create(name="off", command=counter(1, 0), screen="off")
    wait_for(lambda: server.get("/api/agents/plain")["state"] == "exited", 15)
    for name, why in (("plain", "has not entered the alternate screen"), ("off", "setting is off")):
        response = server.request("GET", f"/api/agents/{name}/screen")
        assert response.status == 404 and response.json()["error"]["code"] == "no_screen"
        assert why in response.json()["error"]["message"]
    assert server.request("GET", "/api/agents/nobody/screen").status == 404
    assert server.request("GET", "/api/agents/nobody/screen/stream").status == 404
    assert server.request("POST", "/api/agents", {"name": "x", "command": [PY], "screen": "always"}).status == 400
    server.request("POST", "/api/agents/off/input", {"data": "\n"})


def test_the_screen_routes_check_token_and_origin(server: Server) -> None:
    """Without the token 401; from a page of another origin 403, the stream too."""
    for path in ("/api/agents/shape/screen", "/api/agents/shape/screen/stream"):
        assert server.request("GET", path, headers={"Authorization": None}).status == 401
        assert server.request("GET", path, headers={"Origin": "http://evil.example"}).status == 403


def test_the_stream_is_a_snapshot_then_diffs_that_give_the_screen(server: Server) -> None:
    """The first event after ``connected`` is a snapshot; each diff follows the seq before it;
    the mirror built from them equals ``GET /screen`` at the end; diffs carry only the rows
    that changed."""
    server.create(name="diffs", command=counter(30, 0.02), cols=40, rows=8)
    wait_for(lambda: current_or_none(server, "diffs"), 15)
    mirror = ScreenMirror()
    with server.stream("/api/agents/diffs/screen/stream") as stream:
        events = screen_events(stream, mirror, lambda m: m.present and m.text[4] == "done")
        assert [e.event for e in events[:2]] == ["connected", "snapshot"]
        diffs = [json.loads(e.data) for e in events if e.event == "diff"]
        assert diffs and all({c["row"] for c in d["changed"]} <= {2, 4} for d in diffs)
        assert stream.headers["content-type"].startswith("text/event-stream")
    shown = current(server, "diffs")
    assert (mirror.text, mirror.ansi, mirror.cursor, mirror.seq) == (shown["text"], shown["ansi"], shown["cursor"], shown["seq"])
    server.request("POST", "/api/agents/diffs/input", {"data": "\n"})


@pytest.mark.slow
def test_diffs_are_coalesced_to_one_per_50_ms(server: Server) -> None:
    """A program redrawing a thousand times a second gives the stream at most one diff per
    ~50 ms, and the last one has the last value."""
    server.create(name="busy", command=counter(1500, 0.001), cols=40, rows=8)
    wait_for(lambda: current_or_none(server, "busy"), 15)
    mirror = ScreenMirror()
    with server.stream("/api/agents/busy/screen/stream") as stream:
        started = time.monotonic()
        events = screen_events(stream, mirror, lambda m: m.present and m.text[4] == "done", timeout=30)
        elapsed = time.monotonic() - started
    diffs = [e for e in events if e.event == "diff"]
    assert len(diffs) <= elapsed / 0.05 + 2, (len(diffs), elapsed)
    assert mirror.text[2] == "value   1499"
    server.request("POST", "/api/agents/busy/input", {"data": "\n"})


@pytest.mark.slow
def test_a_client_that_stops_reading_gets_a_fresh_snapshot_not_a_drop(server: Server) -> None:
    """A client that reads nothing while a big coloured screen keeps changing falls behind
    (its socket fills up); it is not dropped, and once it reads again it gets a snapshot, then
    diffs, and ends up with the screen as it is."""
    code = (
        "import select, sys\n"
        "sys.stdout.write('\\x1b[?1049h')\n"
        "i = 0\n"
        "while not select.select([sys.stdin], [], [], 0.02)[0]:\n"  # redraw until a line comes
        "    i += 1\n"
        "    sys.stdout.write(''.join('\\x1b[%d;1H' % (r + 1) + ''.join('\\x1b[3%dm%d' % ((r + c + i) % 8, (c + i) % 10)"
        " for c in range(100)) for r in range(40)))\n"
        "    sys.stdout.flush()\n"
        "sys.stdin.readline()\n"
        "sys.stdout.write('\\x1b[41;1H\\x1b[0mfinished'); sys.stdout.flush()\n"
        "sys.stdin.readline()\n")
    server.create(name="flood", command=[PY, "-u", "-c", code], cols=100, rows=41)
    wait_for(lambda: current_or_none(server, "flood"), 15)
    with server.stream("/api/agents/flood/screen/stream", rcvbuf=4096) as stream:
        assert stream.take().event == "connected"

        def behind() -> bool:
            clients = server.get("/api/sse/stats")["screen_clients"]
            return any(c["agent"] == "flood" and c["behind"] for c in clients)

        wait_for(behind, 30, 0.05, "the client to fall behind")
        server.request("POST", "/api/agents/flood/input", {"data": "\n"})
        mirror = ScreenMirror()
        events = screen_events(stream, mirror, lambda m: m.present and m.text[40] == "finished", timeout=30)
        kinds = [e.event for e in events]
        assert kinds.count("snapshot") >= 2, kinds[:20]  # the first, and one after falling behind
        assert not stream.closed
    assert server.get("/api/sse/stats")["screen_snapshots_for_slow"] >= 1
    assert mirror.text == current(server, "flood")["text"]
    server.request("POST", "/api/agents/flood/input", {"data": "\n"})


def test_a_new_run_gets_a_new_snapshot_and_no_screen_while_it_has_none(server: Server) -> None:
    """A stream opened before the screen exists says ``no_screen``; the screen's start is a
    snapshot; a restart (a new run) is a snapshot of the new run's screen."""
    waits_then_draws = [PY, "-u", "-c", "import sys\nsys.stdin.readline()\n"
                        "sys.stdout.write('\\x1b[?1049hrun screen'); sys.stdout.flush()\nsys.stdin.readline()\n"]
    server.create(name="runs", command=waits_then_draws, cols=30, rows=5)
    server.wait_state("runs", "running")
    mirror = ScreenMirror()
    with server.stream("/api/agents/runs/screen/stream") as stream:
        events = screen_events(stream, mirror, lambda m: m.run == 1 and not m.present)
        assert json.loads(events[-1].data) == {"run": 1, "mode": "auto"}
        server.request("POST", "/api/agents/runs/input", {"data": "\n"})
        screen_events(stream, mirror, lambda m: m.present and m.text[0] == "run screen")
        assert server.request("POST", "/api/agents/runs/restart").status == 202
        screen_events(stream, mirror, lambda m: m.run == 2 and not m.present)
        server.request("POST", "/api/agents/runs/input", {"data": "\n"})
        screen_events(stream, mirror, lambda m: m.run == 2 and m.present and m.text[0] == "run screen")
    server.request("POST", "/api/agents/runs/stop", {"grace_s": 0})


@pytest.mark.timeout(60)
def test_streams_of_a_removed_agent_end(make_server: Callable[..., Server]) -> None:
    """Deleting an agent ends its screen streams (at the next keep-alive)."""
    server = make_server(env={"AGENT_SUPERVISOR_KEEPALIVE_S": "0.3"})
    server.create(name="gone", command=counter(1, 0), cols=30, rows=5)
    wait_for(lambda: current_or_none(server, "gone"), 15)
    with server.stream("/api/agents/gone/screen/stream") as stream:
        screen_events(stream, ScreenMirror(), lambda m: m.present)
        server.request("POST", "/api/agents/gone/stop", {"grace_s": 0})
        server.wait_state("gone", "exited")
        assert server.request("DELETE", "/api/agents/gone").status == 204
        rest = list(stream.events(timeout=10))
        assert stream.closed and {e.event for e in rest} <= {"ping"}
