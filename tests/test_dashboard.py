"""The dashboard as a supervisord or PM2 user reads it, in a real headless Chromium.

What issue 14 asked of it: a 700 px window that stays usable, a filter that keeps the run
separators, the command with its shell quoting, plurals, a start form that folds away, cards
with CPU, memory, uptime and restarts, stop-all, delete and download-log buttons, and the
waiting-for-input badge with the page title counting who waits. Each test saves a screenshot
into CI's output folder (``$CI_OUTPUT_DIR``, see tests/support/browser.py) for a person to look
at; every wait is on a condition with a deadline.
"""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.processes import Server, python_agent

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

Shot = Callable[[Page, str], Any]

#: An agent that asks and waits for the answer: the prompt has no newline.
ASK = "import sys\nsys.stdout.write('Continue? [y/N] '); sys.stdout.flush()\nprint('answer:', sys.stdin.readline().strip())\n"

#: An agent that runs until it is stopped.
SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"]


def open_dashboard(page: Page, server: Server, agent: str | None = None) -> None:
    """Load the dashboard from the link ``serve`` prints (optionally with ``agent`` selected)
    and wait for its live stream."""
    page.goto(server.dashboard + (f"#agent={agent}" if agent else ""))
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")


def card(page: Page, name: str) -> Any:
    return page.locator(f'#agent-list li[data-name="{name}"]')


def answer_dialogs(page: Page) -> list[str]:
    """Accept every confirm() of the page; returns the list their messages are appended to."""
    messages: list[str] = []

    def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return messages


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------- pure helpers (no server)


@pytest.mark.slow
def test_words_are_quoted_counts_plural_and_figures_compact(static_page: Page) -> None:
    """shellQuote gives back what a shell needs typed; plural, duration and bytes read right."""
    result = static_page.evaluate(
        """async () => {
             const m = await import('/static/util.js');
             return {
               quoted: [m.shellQuote(['echo', 'quoted arg']), m.shellQuote(['sh', '-c', "it's", '', 'a=b,c/d.e:f@g%+'])],
               plural: [m.plural(0, 'line'), m.plural(1, 'line'), m.plural(2, 'line'), m.plural(1234, 'line'),
                        m.plural(1, 'process', 'processes'), m.plural(3, 'process', 'processes')],
               duration: [m.duration(5), m.duration(192), m.duration(7384), m.duration(200000), m.duration(null)],
               bytes: [m.bytes(512), m.bytes(900000), m.bytes(48234496), m.bytes(3 * 1073741824)],
               sentences: ['exited', 'failed', 'running', 'backoff', undefined].map((state) => m.stateSentence({ state })),
             };
           }"""
    )
    assert result["quoted"] == ["echo 'quoted arg'", "sh -c 'it'\\''s' '' a=b,c/d.e:f@g%+"]
    assert result["plural"] == ["0 lines", "1 line", "2 lines", "1,234 lines", "1 process", "3 processes"]
    assert result["duration"] == ["5s", "3m12s", "2h03m", "2d07h", "–"]
    assert result["bytes"] == ["512 B", "879 KB", "46 MB", "3.0 GB"]
    assert result["sentences"] == ["The agent has exited", "The agent could not start", "The agent is running",
                                   "The agent waits to restart", "The agent has not run yet"]


# ------------------------------------------------------------------------- against a real server


def test_the_header_keeps_shell_quoting_and_counts_read_right(page: Page, server: Server, shot: Shot) -> None:
    """["sh", "-c", "echo one line", "it's", ""] shows as a shell would take it; one line is
    "1 line" on the card and in the status, and an exited agent "has exited"."""
    server.create(name="quoted", command=["sh", "-c", "echo one line", "it's", ""])
    server.wait_state("quoted", "exited")
    open_dashboard(page, server, "quoted")
    expect(page.locator("#viewer-meta")).to_contain_text("sh -c 'echo one line' 'it'\\''s' ''")
    expect(card(page, "quoted").locator(".cell.lines")).to_have_text("1 line")
    expect(page.locator("#line-status")).to_have_text("1 line")
    expect(page.locator("#input-text")).to_have_attribute("placeholder", "The agent has exited")
    page.fill("#filter", "one")
    expect(page.locator("#line-status")).to_have_text("1 of 1 line matches")
    shot(page, "dashboard-quoting-plurals")


@pytest.mark.slow
def test_the_filter_keeps_the_separator_of_each_run_with_a_match(page: Page, server: Server, tmp_path: Path,
                                                                  shot: Shot) -> None:
    """Under a filter, a run's separator shows while one of its lines matches (line numbers
    start again with each run), the first run's included; runs without a match hide theirs,
    and a new run's separator comes with its first matching line."""
    counter = tmp_path / "runs"
    code = (
        "import pathlib, sys\n"
        "p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n))\n"
        "print('start')\n"
        "if n != 2: print(f'needle of run {n}')\n"
        "print('end')\n"
    )
    server.create(name="runs", command=[*python_agent(code), str(counter)])
    for run in (1, 2, 3):
        if run > 1:
            assert server.request("POST", "/api/agents/runs/restart").status == 202
        server.wait_state("runs", "exited")
        assert server.get("/api/agents/runs")["run"] == run
    open_dashboard(page, server, "runs")
    expect(page.locator("#term-lines .row.log")).to_have_count(8)
    expect(page.locator("#term-lines .row.sep:not([hidden])")).to_have_text(["run 2", "run 3"])

    page.fill("#filter", "needle")
    shown = page.locator("#term-lines .row:not([hidden])")
    expect(shown).to_have_text(["run 1", "2needle of run 1", "run 3", "2needle of run 3"])
    expect(page.locator("#line-status")).to_have_text("2 of 8 lines match")
    shot(page, "dashboard-filter-runs")

    page.click("#restart-btn")  # run 4, with the filter still on
    expect(shown).to_have_text(["run 1", "2needle of run 1", "run 3", "2needle of run 3", "run 4", "2needle of run 4"])
    page.fill("#filter", "")
    expect(page.locator("#term-lines .row.sep:not([hidden])")).to_have_text(["run 2", "run 3", "run 4"])


@pytest.mark.slow
def test_at_700_px_values_statistics_and_buttons_stay_usable(page: Page, server: Server, shot: Shot) -> None:
    """At 700 px wide nothing overflows the window: the statistics stay, extraction values
    show whole, and the agent's buttons and the input are on screen."""
    code = "import sys\nfor i in range(3): print(f'build id 20261201-{i:04d}-abcdef0123456789 done')\nsys.stdin.readline()\n"
    server.create(name="narrow-agent-with-a-long-name", command=python_agent(code),
                  extractors=[{"name": "build_id", "pattern": r"build id (?P<value>\S+)"}])
    page.set_viewport_size({"width": 700, "height": 800})
    open_dashboard(page, server, "narrow-agent-with-a-long-name")
    expect(page.locator("#extractions tbody tr")).to_have_count(3)
    expect(page.locator("#stats")).to_be_visible()
    expect(page.locator("#stat-events")).to_have_text(re.compile(r"^[\d,]+$"))
    layout = page.evaluate(
        """() => {
             const box = (el) => el.getBoundingClientRect();
             const cells = [...document.querySelectorAll('#extractions td.ext-value')];
             return {
               pageWidth: document.documentElement.scrollWidth,
               values: cells.map((c) => [c.textContent, c.scrollWidth <= c.clientWidth]),
               buttons: ['download-btn', 'restart-btn', 'stop-btn', 'delete-btn', 'input-btn', 'input-text', 'filter']
                 .map((id) => { const b = box(document.getElementById(id));
                                return [id, b.width > 0 && b.left >= 0 && b.right <= innerWidth && b.bottom <= innerHeight]; }),
               stats: box(document.getElementById('stats')).right <= innerWidth,
             };
           }"""
    )
    shot(page, "dashboard-700px")
    assert layout["pageWidth"] <= 700
    assert layout["values"] == [[f"20261201-{i:04d}-abcdef0123456789", True] for i in (2, 1, 0)]
    assert all(ok for _, ok in layout["buttons"]), layout["buttons"]
    assert layout["stats"]
    assert server.request("POST", "/api/agents/narrow-agent-with-a-long-name/input", {"data": "\n"}).status == 204


@pytest.mark.slow
def test_the_start_form_folds_so_fourteen_agents_fit(page: Page, make_server: Callable[..., Server],
                                                     shot: Shot) -> None:
    """With agents already there the start form starts folded and every one of 14 cards is on
    screen; unfolded it is the usual form, and the choice is kept across a reload."""
    server = make_server()
    open_dashboard(page, server)
    expect(page.locator("#start-panel")).to_have_attribute("open", "")  # no agent yet: open
    for i in range(14):
        server.create(name=f"agent-{i:02d}", command=["true"])
    page.reload()
    expect(page.locator("#agent-list li")).to_have_count(14)
    expect(page.locator("#start-panel")).not_to_have_attribute("open", "")
    expect(page.locator("#start-form")).to_be_hidden()
    visible = page.evaluate(
        """() => { const list = document.getElementById('agent-list').getBoundingClientRect();
                   return [...document.querySelectorAll('#agent-list li')].filter((li) => {
                     const b = li.getBoundingClientRect(); return b.top >= list.top && b.bottom <= list.bottom + 1; }).length; }"""
    )
    shot(page, "dashboard-14-agents")
    assert visible == 14

    page.click("#start-panel summary")
    expect(page.locator("#start-form")).to_be_visible()
    page.reload()
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#start-form")).to_be_visible()
    page.click("#start-panel summary")
    expect(page.locator("#start-form")).to_be_hidden()


@pytest.mark.slow
def test_each_card_shows_cpu_memory_uptime_and_restarts(page: Page, server: Server, shot: Shot) -> None:
    """A running agent's card has its tree's CPU and memory (3 processes), an uptime that runs,
    and its restarts; a restart from the page counts one more and starts the uptime again."""
    server.create(name="tree", command=["sh", "-c", "sleep 60 & sleep 60 & wait"])
    open_dashboard(page, server, "tree")
    cells = card(page, "tree").locator(".agent-meta")
    expect(cells.locator(".cell.cpu")).to_have_text(re.compile(r"^CPU (\d+%|–)$"))
    expect(cells.locator(".cell.mem")).to_have_text(re.compile(r"^\d+ (KB|MB)$"))
    expect(cells.locator(".cell.mem")).to_have_attribute("title", "resident memory of 3 processes")
    expect(cells.locator(".cell.up")).to_have_text(re.compile(r"^up \d+s$"))
    expect(cells.locator(".cell.restarts")).to_have_text("↻ 0")
    uptime = """Number(/up (\\d+)s/.exec(document.querySelector('li[data-name="tree"] .cell.up').textContent)?.[1])"""
    page.wait_for_function(f"(n) => {uptime} >= n", arg=2)  # it runs
    shot(page, "dashboard-card-figures")

    before = page.evaluate(f"() => {uptime}")
    page.click("#restart-btn")
    expect(cells.locator(".cell.restarts")).to_have_text("↻ 1")
    expect(cells.locator(".cell.restarts")).to_have_attribute("title", "1 restart (run 2)")
    page.wait_for_function(f"(n) => {uptime} < n", arg=before)  # the new run's uptime, not the last's
    assert server.request("POST", "/api/agents/tree/stop").status == 202
    expect(cells.locator(".cell.mem")).to_have_text("– MB")
    expect(cells.locator(".cell.up")).to_have_text("up –")


@pytest.mark.slow
def test_stop_all_download_and_delete(page: Page, make_server: Callable[..., Server], shot: Shot) -> None:
    """Stop all ends every running agent after one confirmation; Download log saves the raw
    output.log bytes; Delete removes an ended agent, and a running one after stopping it (the
    API itself refuses to delete a running agent, like supervisorctl's remove)."""
    server = make_server()
    messages = answer_dialogs(page)
    for name in ("one", "two"):
        server.create(name=name, command=SLEEPER)
        server.wait_state(name, "running")
    server.create(name="printer", command=python_agent("print('\\x1b[32mgreen\\x1b[0m and bytes \\u00e9')"))
    server.wait_state("printer", "exited")
    open_dashboard(page, server, "printer")
    expect(page.locator("#stop-all-btn")).to_be_enabled()

    page.click("#stop-all-btn")
    for name in ("one", "two"):
        expect(card(page, name).locator(".badge")).to_have_text(re.compile(r"^exited "))
    assert messages[-1] == "Stop 2 agents: one, two?"
    expect(page.locator("#stop-all-btn")).to_be_disabled()

    with page.expect_download() as download:
        page.click("#download-btn")
    assert download.value.suggested_filename == "printer-output.log"
    saved = Path(download.value.path()).read_bytes()
    assert saved == server.request("GET", "/api/agents/printer/output.log").body
    assert b"\x1b[32mgreen\x1b[0m and bytes \xc3\xa9" in saved

    page.click("#delete-btn")
    assert messages[-1] == "Delete agent printer and its whole history?"
    expect(card(page, "printer")).to_have_count(0)
    expect(page.locator("#viewer-title")).to_have_text("No agent selected")
    assert server.request("GET", "/api/agents/printer").status == 404

    server.create(name="busy", command=SLEEPER)
    server.wait_state("busy", "running")
    refused = server.request("DELETE", "/api/agents/busy")
    assert refused.status == 409 and refused.json()["error"]["code"] == "agent_running"
    card(page, "busy").locator("button").click()
    expect(page.locator("#viewer-badge")).to_have_text("running")
    page.click("#delete-btn")
    assert messages[-1] == "busy is running. Stop it, then delete it and its whole history?"
    expect(card(page, "busy")).to_have_count(0)
    expect(page.locator("#viewer-notice")).to_have_text("busy was deleted, with its history.")
    assert server.request("GET", "/api/agents/busy").status == 404
    shot(page, "dashboard-after-delete")


@pytest.mark.slow
def test_waiting_agents_get_a_badge_and_the_title_counts_them(page: Page, make_server: Callable[..., Server],
                                                              tmp_path: Path, shot: Shot) -> None:
    """Two agents at a prompt: each card and the header show the badge, the title starts with
    "(2 waiting)"; answering one takes its badge away and the count down. A config file's
    agent cannot be deleted from the page."""
    script = tmp_path / "ask.py"
    script.write_text(ASK)
    command = json.dumps([sys.executable, "-u", str(script)])  # a JSON list of strings is TOML too
    config = write_config(tmp_path / "agents.toml", f"[agents.from-file]\ncommand = {command}\n")
    server = make_server("--config", str(config), env={"AGENT_SUPERVISOR_INPUT_WAIT_S": "0.3"})
    server.create(name="from-api", command=python_agent(ASK))
    open_dashboard(page, server, "from-file")
    expect(page).to_have_title("(2 waiting) from-file · agent-supervisor")
    for name in ("from-file", "from-api"):
        expect(card(page, name).locator(".flag.waiting")).to_be_visible()
    expect(page.locator("#waiting-count")).to_have_text("2 waiting")
    expect(page.locator("#viewer-waiting")).to_be_visible()
    expect(page.locator("#input-text")).to_have_attribute("placeholder", "Answer: Continue? [y/N]")
    expect(page.locator("#delete-btn")).to_be_disabled()
    expect(page.locator("#delete-btn")).to_have_attribute("title", re.compile("config file"))
    shot(page, "dashboard-waiting")

    page.fill("#input-text", "y")
    page.press("#input-text", "Enter")
    expect(card(page, "from-file").locator(".flag.waiting")).to_be_hidden()
    expect(page).to_have_title("(1 waiting) from-file · agent-supervisor")
    expect(page.locator("#waiting-count")).to_have_text("1 waiting")
    expect(page.locator("#viewer-waiting")).to_be_hidden()
    assert server.request("POST", "/api/agents/from-api/input", {"data": "n\r"}).status == 204
    expect(page).to_have_title("from-file · agent-supervisor")
    expect(page.locator("#waiting-count")).to_be_hidden()
