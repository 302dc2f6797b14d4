"""The dashboard's Screen view (static/screen.js, xterm.js) in a real headless Chromium.

A full-screen agent's screen is drawn by xterm.js at the agent's size, in colour, with the
cursor where the agent's is; what xterm.js holds is compared with ``GET /screen``. Keys typed
into it reach the agent as a terminal sends them: the agent here puts its terminal in raw mode
and shows the bytes it got. The page runs under the server's real CSP, and a violation fails
the test. (The real codex TUI in this view: ``test_codex_offline.py``.)
"""
from __future__ import annotations

import sys
from typing import Any

import pytest

from support.browser import screenshot
from support.processes import Server, python_agent
from support.waiting import wait_for

pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - the fixtures say what to install (and fail under CI)
    import os

    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        raise
    pytest.skip("Python Playwright is missing: pip install -e '.[test]'", allow_module_level=True)

WAIT_MS = 15_000
expect.set_options(timeout=WAIT_MS)

#: Raw mode, cursor keys in application mode, the alternate screen; a coloured title; shows the
#: bytes read so far in hex; ends on "q".
KEYS_AGENT = python_agent(
    "import os, sys, tty\n"
    "tty.setraw(0)\n"
    "w = sys.stdout.write\n"
    "w('\\x1b[?1049h\\x1b[?1h\\x1b[H\\x1b[2J\\x1b[1;3H\\x1b[1;35mkeys\\x1b[0m \\x1b[44m blue \\x1b[0m')\n"
    "w('\\x1b[5;7H'); sys.stdout.flush()\n"
    "got = b''\n"
    "while not got.endswith(b'q'):\n"
    "    got += os.read(0, 100)\n"
    "    w('\\x1b[3;1H\\x1b[2K' + ' '.join('%02x' % c for c in got) + '\\x1b[5;7H'); sys.stdout.flush()\n"
)

#: Run in every page before its own scripts: it records every CSP violation of the page.
CSP_WATCH = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(
  `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}:${e.columnNumber} ${e.sample}`));
"""


def open_screen(page: Page, server: Server, name: str) -> None:
    """The dashboard with ``name`` selected, its Screen view up (it comes up by itself)."""
    page.add_init_script(CSP_WATCH)
    page.goto(f"{server.dashboard}#agent={name}")
    expect(page.locator("#tab-screen")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#screen-view")).to_be_visible()


def xterm_rows(page: Page) -> list[str]:
    """What xterm.js holds, row by row (trailing blanks left out)."""
    rows: list[str] = page.evaluate(
        """() => { const t = window.agentSupervisor.screen.term; const b = t.buffer.active;
                   return [...Array(t.rows).keys()].map((i) => b.getLine(i).translateToString(true)); }""")
    return rows


def xterm_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(
        """() => { const t = window.agentSupervisor.screen.term; const b = t.buffer.active;
                   const cell = (x, y) => b.getLine(y).getCell(x);
                   return {cols: t.cols, rows: t.rows, x: b.cursorX, y: b.cursorY,
                           title_bold: cell(2, 0).isBold() !== 0, title_fg: cell(2, 0).getFgColor(),
                           blue_bg: cell(8, 0).getBgColor(), violations: window.cspViolations}; }""")
    return state


@pytest.mark.slow
def test_the_screen_view_draws_the_screen_and_sends_keys_as_a_terminal(page: Page, make_server: Any) -> None:
    """A full-screen agent's Screen view comes up by itself, at the agent's size, with its
    colours and cursor, row for row what GET /screen shows; printable keys, Enter, Esc,
    Backspace, arrows (in application mode: ESC O A), Tab and Ctrl-C reach the agent as the
    bytes a terminal sends; no CSP violation."""
    server = make_server()
    server.create(name="keys", command=KEYS_AGENT, cols=60, rows=8)
    wait_for(lambda: server.request("GET", "/api/agents/keys/screen").status == 200, 15)
    open_screen(page, server, "keys")
    wait_for(lambda: xterm_rows(page)[0].startswith("  keys"), 15, 0.05, "the title in xterm.js")
    state = xterm_state(page)
    assert (state["cols"], state["rows"], state["x"], state["y"]) == (60, 8, 6, 4)
    assert state["title_bold"] and state["title_fg"] == 5 and state["blue_bg"] == 4

    page.locator("#screen-term").click()
    for key in ("a", "b", "Enter", "Escape", "Backspace", "ArrowUp", "ArrowLeft", "Tab", "Control+c"):
        page.keyboard.press(key)
    expected = "61 62 0d 1b 7f 1b 4f 41 1b 4f 44 09 03"
    wait_for(lambda: server.get("/api/agents/keys/screen")["text"][2] == expected, 15, 0.05, "the keys at the agent")
    wait_for(lambda: xterm_rows(page)[2] == expected, 15, 0.05, "the agent's answer in xterm.js")
    assert [row.rstrip() for row in xterm_rows(page)] == server.get("/api/agents/keys/screen")["text"]
    assert xterm_state(page)["violations"] == []
    screenshot(page, "screen-view-keys")
    page.keyboard.press("q")
    server.wait_state("keys", "exited")


@pytest.mark.slow
def test_the_log_view_stays_for_line_agents_and_the_tabs_switch(page: Page, make_server: Any) -> None:
    """An agent without a screen shows no Screen tab; for one with a screen the tabs switch
    between the log and the screen, and the screen is still there after a switch."""
    server = make_server()
    server.create(name="lines", command=[sys.executable, "-c", "print('only lines')"])
    server.create(name="keys2", command=KEYS_AGENT, cols=40, rows=6)
    page.add_init_script(CSP_WATCH)
    page.goto(f"{server.dashboard}#agent=lines")
    expect(page.locator("#term-lines")).to_contain_text("only lines")
    expect(page.locator("#view-tabs")).to_be_hidden()
    page.goto(f"{server.url}/?again#agent=keys2")  # a new document, not only a new hash
    expect(page.locator("#tab-screen")).to_have_attribute("aria-selected", "true")
    page.locator("#tab-log").click()
    expect(page.locator("#log-view")).to_be_visible()
    expect(page.locator("#screen-view")).to_be_hidden()
    page.locator("#tab-screen").click()
    wait_for(lambda: xterm_rows(page)[0].startswith("  keys"), 15, 0.05, "the title in xterm.js")
    assert page.evaluate("window.cspViolations") == []
    page.locator("#screen-term").click()
    page.keyboard.press("q")
    server.wait_state("keys2", "exited")
