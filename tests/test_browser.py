"""The dashboard (static/) and the SSE test page (test_sse.html) in a real headless Chromium.

Two kinds of tests: the pure modules (ANSI parser, line buffer, form parsing) loaded from disk
into a blank page, and the pages against the real server (``make_server`` from conftest), with
agents that are tiny Python programs. Every wait is on a condition with a deadline: Playwright's
``expect``/``wait_for_function`` on the page, an SSE read on the server side.
"""
from __future__ import annotations

import collections
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.browser import OtherSite
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

#: Deadline (ms) of every wait on the page.
WAIT_MS = 15_000
expect.set_options(timeout=WAIT_MS)

#: Reconnect quickly in tests (the server tells EventSource how long to wait).
FAST_RETRY = {"AGENT_SUPERVISOR_RETRY_MS": "200"}

# An agent that prints, waits for one line of input, prints again and ends.
BEFORE_AND_AFTER = (
    "import sys\n"
    "for i in range(1, {n} + 1): print(f'before {{i}}')\n"
    "line = sys.stdin.readline().strip()\n"
    "for i in range(1, {n} + 1): print(f'after {{i}} ({{line}})')\n"
)


# ------------------------------------------------------------------------------------- helpers


@pytest.fixture
def other_site() -> Iterator[OtherSite]:
    """Another web server on another port of 127.0.0.1, recording what the browser sends it."""
    site = OtherSite()
    yield site
    site.close()


def open_dashboard(page: Page, url: str, agent: str | None = None, token: str | None = None) -> None:
    """Load the dashboard as the link ``serve`` prints (with ``?token=``; optionally with
    ``agent`` selected) and wait for its live stream."""
    page.goto(url + "/" + (f"?token={token}" if token else "") + (f"#agent={agent}" if agent else ""))
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")


def agent_item(page: Page, name: str) -> Any:
    return page.locator(f'#agent-list li[data-name="{name}"]')


def log_rows(page: Page) -> list[tuple[int, str]]:
    """(line number, text) of every log row in the viewer, in order."""
    rows: list[list[Any]] = page.evaluate(
        """() => [...document.querySelectorAll('#term-lines .row.log')]
                 .map((r) => [Number(r.dataset.line), r.querySelector('.tx').textContent])"""
    )
    return [(int(n), str(t)) for n, t in rows]


def wait_for_row(page: Page, text: str, timeout: int = WAIT_MS) -> None:
    page.locator("#term-lines .row.log .tx", has_text=re.compile(f"^{re.escape(text)}$")).first.wait_for(
        timeout=timeout
    )


def wait_complete(server: Server, name: str, timeout: float = 30.0) -> None:
    """Block until the agent's own stream (read directly, not through any proxy) says complete."""
    with server.stream(f"/api/agents/{name}/stream") as stream:
        stream.until(lambda e: e.event == "complete", timeout=timeout)


def history_lines(server: Server, name: str) -> list[tuple[int, str]]:
    """(line_num, plain text) of every complete log line the server kept for ``name`` (read a
    page of 10,000 at a time: a flood may keep more than one)."""
    events: list[dict[str, Any]] = []
    while True:
        after = events[-1]["id"] if events else 0
        page = server.get(f"/api/agents/{name}/events?after={after}&limit=10000")["events"]
        events.extend(page)
        if len(page) < 10000:
            break
    return [
        (e["data"]["line_num"], e["data"].get("plain", e["data"]["line"]))
        for e in events
        if e["type"] == "log" and not e["data"].get("partial")
    ]


def js_module(page: Page, module: str, body: str, arg: Any = None) -> Any:
    """Run ``body`` (a JS function body using ``m``, the module, and ``arg``) in the page."""
    return page.evaluate(
        f"async (arg) => {{ const m = await import('/static/{module}'); {body} }}", arg
    )


# ---------------------------------------------------------------------- pure modules (no server)

# The style of each run, with only what differs from plain text: {"fg": 1} / {"fg": [r, g, b]}.
SUMMARISE_RUNS = """
  const style = (s) => {
    const out = {};
    for (const [k, v] of Object.entries(s)) {
      if (v === m.PLAIN[k]) continue;
      out[k] = v && typeof v === 'object' ? ('i' in v ? v.i : [v.r, v.g, v.b]) : v;
    }
    return out;
  };
"""


@pytest.mark.parametrize(
    ("text", "runs"),
    [
        ("\x1b[31mred\x1b[0m plain", [["red", {"fg": 1}], [" plain", {}]]),
        ("\x1b[1;92mok", [["ok", {"bold": True, "fg": 10}]]),
        ("\x1b[44;97mx", [["x", {"bg": 4, "fg": 15}]]),
        ("\x1b[38;5;208morange", [["orange", {"fg": 208}]]),
        ("\x1b[38;2;255;128;0mtrue", [["true", {"fg": [255, 128, 0]}]]),
        ("\x1b[38:2::1:2:3mcolon", [["colon", {"fg": [1, 2, 3]}]]),
        ("\x1b[48;5;24;1mbg", [["bg", {"bg": 24, "bold": True}]]),
        ("\x1b[2;3;4;7mx\x1b[22;23;24;27my", [["x", {"dim": True, "italic": True, "underline": True, "inverse": True}], ["y", {}]]),
        ("\x1b[1mx\x1b[my", [["x", {"bold": True}], ["y", {}]]),
        ("\x1b[31;39mdefault", [["default", {}]]),
        ("a\x1b[2Kb\x1b[10Gc\x1b]0;title\x07d\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\e\x1b(Bf\x07g\x1b[?25lh", [["abcdlinkefgh", {}]]),
        ("tab\there\x00\x08", [["tab\there", {}]]),
        ("\x1b[38;5mbroken", [["broken", {}]]),
    ],
)
@pytest.mark.slow
def test_ansi_parser_turns_sgr_into_styled_runs(static_page: Page, text: str, runs: list[Any]) -> None:
    """SGR sequences (16/256/truecolour, attributes, resets) become styled runs; other escapes vanish."""
    got = js_module(static_page, "ansi.js", SUMMARISE_RUNS + "return m.parseAnsi(arg).runs.map((r) => [r.text, style(r.style)]);", text)
    assert got == runs


def test_ansi_state_carries_across_lines(static_page: Page) -> None:
    """A colour left on at the end of a line still applies to the next line, like on a terminal."""
    got = js_module(
        static_page,
        "ansi.js",
        SUMMARISE_RUNS
        + """const a = m.parseAnsi(arg[0]); const b = m.parseAnsi(arg[1], a.end);
             return b.runs.map((r) => [r.text, style(r.style)]);""",
        ["\x1b[32mgreen starts", "still green\x1b[0m done"],
    )
    assert got == [["still green", {"fg": 2}], [" done", {}]]


def test_agent_text_is_never_parsed_as_markup(static_page: Page) -> None:
    """Rendering agent text that looks like HTML produces text nodes, never elements or scripts."""
    got = js_module(
        static_page,
        "ansi.js",
        """const div = document.createElement('div'); document.body.appendChild(div);
           div.appendChild(m.renderRuns(m.parseAnsi(arg).runs));
           return {text: div.textContent, elements: div.querySelectorAll('img, script, b').length,
                   spans: div.querySelectorAll('span').length, pwned: window.pwned === 1};""",
        "<img src=x onerror=window.pwned=1>\x1b[31m<script>window.pwned=1</script><b>x</b>",
    )
    assert got == {
        "text": "<img src=x onerror=window.pwned=1><script>window.pwned=1</script><b>x</b>",
        "elements": 0,
        "spans": 1,
        "pwned": False,
    }


def test_line_buffer_replaces_partials_and_stays_bounded(static_page: Page) -> None:
    """Rows are keyed by run and line number: partials are replaced, stale events ignored, old rows evicted."""
    got = js_module(
        static_page,
        "linebuffer.js",
        """
        const b = new m.LineBuffer(3);
        const log = (id, run, n, line, partial) =>
          b.applyLog({id, data: {run, line_num: n, line, partial}});
        log(1, 1, 1, 'Continue? ', true);
        log(2, 1, 1, 'Continue? [y/N] ', true);
        const stale = log(1, 1, 1, 'Continue? ', true);
        log(3, 1, 1, 'Continue? [y/N] y');
        const first = b.takeChanges();
        log(4, 1, 2, 'two'); log(5, 1, 3, 'three'); log(6, 2, 1, 'run two');
        return {
          stale, firstAdded: first.added.map((r) => [r.key, r.kind === 'sep' ? r.lead : r.plain, r.partial ?? null]),
          keys: [...b.rows.keys()], evicted: b.evictedTotal, size: b.size,
        };""",
    )
    assert got == {
        "stale": None,
        "firstAdded": [["sep:1", True, None], ["1:1", "Continue? [y/N] y", False]],
        "keys": ["1:3", "sep:2", "2:1"],
        "evicted": 2,
        "size": 3,
    }


def test_command_and_extractor_fields_are_parsed_like_a_shell(static_page: Page) -> None:
    """The start form splits the command like a POSIX shell and reads name=pattern extractors."""
    got = js_module(
        static_page,
        "util.js",
        """return {
             argv: m.shellSplit(`python3 -c 'print("a b")' "x\\\\"y" z\\\\ w ''`),
             ext: m.parseExtractors('percent=(?P<value>\\\\d+)%\\n# comment\\nword/i=hello'),
             bad: (() => { try { m.shellSplit("echo 'oops"); } catch (e) { return e.message; } })(),
           };""",
    )
    assert got["argv"] == ["python3", "-c", 'print("a b")', 'x"y', "z w", ""]
    assert got["ext"] == [
        {"name": "percent", "pattern": r"(?P<value>\d+)%"},
        {"name": "word", "pattern": "hello", "flags": "i"},
    ]
    assert "unclosed" in got["bad"]


# ------------------------------------------------------------------------ dashboard + real server


@pytest.mark.slow
def test_dashboard_shows_a_new_agents_lines_live(page: Page, server: Server) -> None:
    """An agent started elsewhere appears in the list without a reload and its lines stream in as printed."""
    open_dashboard(page, server.url, token=server.token)
    expect(page.locator("#agents-empty")).to_be_visible()
    server.create(name="live", command=python_agent(BEFORE_AND_AFTER.format(n=3)))
    expect(agent_item(page, "live").locator(".badge")).to_have_text(re.compile("starting|running"))
    agent_item(page, "live").locator("button").click()
    wait_for_row(page, "before 3")
    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "connected")
    assert [t for _, t in log_rows(page)] == ["before 1", "before 2", "before 3"]

    page.fill("#input-text", "go")
    page.press("#input-text", "Enter")
    wait_for_row(page, "after 3 (go)")
    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "done")
    expect(agent_item(page, "live").locator(".badge")).to_have_text("exited 0")
    expect(page.locator("#viewer-badge")).to_have_text("exited 0")
    assert log_rows(page) == history_lines(server, "live")
    # Done means closed: the agent's stream has no client left (and the page did not reopen it).
    stats = server.get("/api/sse/stats")
    assert stats["agents"]["live"] == 0


def test_partial_line_is_shown_then_completed_in_place(page: Page, server: Server) -> None:
    """A prompt without a newline shows as a partial row, and the completed line replaces that same row."""
    code = "import sys\nsys.stdout.write('Continue? [y/N] '); sys.stdout.flush()\nprint('answer:', sys.stdin.readline().strip())\n"
    server.create(name="ask", command=python_agent(code))
    open_dashboard(page, server.url, "ask", token=server.token)
    partial = page.locator("#term-lines .row.partial")
    expect(partial.locator(".tx")).to_have_text("Continue? [y/N] ")
    expect(page.locator("#term-placeholder")).to_be_hidden()

    page.fill("#input-text", "y")
    page.click("#input-btn")
    wait_for_row(page, "answer: y")
    expect(page.locator("#term-lines .row.partial")).to_have_count(0)
    rows = log_rows(page)
    assert rows[0][0] == 1 and rows[0][1].startswith("Continue? [y/N] ")
    assert [n for n, _ in rows] == list(range(1, len(rows) + 1)), "one row per line number"


@pytest.mark.slow
def test_ansi_colours_render_as_styled_spans(page: Page, server: Server, shot: Callable[[Page, str], Any]) -> None:
    """Coloured agent output shows as spans with the right colours and attributes, no escape codes left."""
    code = (
        "print('\\x1b[1;32m✔ ok\\x1b[0m compiled \\x1b[36msrc/app.ts\\x1b[0m in \\x1b[1m412ms\\x1b[0m')\n"
        "print('\\x1b[33mwarning:\\x1b[0m \\x1b[4munused\\x1b[24m \\x1b[3mitalic\\x1b[23m \\x1b[2mdim\\x1b[22m')\n"
        "print('\\x1b[38;5;208m256-orange\\x1b[0m \\x1b[38;2;255;105;180mtruecolor-pink\\x1b[0m \\x1b[7minverse\\x1b[0m')\n"
        "print('\\x1b]0;window title\\x07\\x1b[2Kplain after escapes')\n"
        "for i in range(1, 13): print(f'step {i}/12: building \\x1b[32m{i * 100 // 12}%\\x1b[0m, tokens used: {i * 1234}')\n"
        "print('\\x1b[1;31merror:\\x1b[0m could not reach \\x1b[4mhttps://registry.example.org/pkg\\x1b[24m (retrying)')\n"
    )
    server.create(
        name="colours",
        command=python_agent(code),
        extractors=[{"name": "percent", "pattern": r"(?P<value>\d+)%"}],
    )
    open_dashboard(page, server.url, "colours", token=server.token)
    wait_for_row(page, "error: could not reach https://registry.example.org/pkg (retrying)")

    def style(text: str) -> dict[str, str]:
        span = page.locator("#term-lines .tx span", has_text=re.compile(f"^{re.escape(text)}$")).first
        computed: dict[str, str] = span.evaluate(
            """(el) => { const s = getComputedStyle(el);
                 return {color: s.color, bg: s.backgroundColor, weight: s.fontWeight, style: s.fontStyle,
                         deco: s.textDecorationLine, opacity: s.opacity}; }"""
        )
        return computed

    ok = style("✔ ok")
    assert (ok["color"], ok["weight"]) == ("rgb(87, 171, 90)", "700")
    assert style("src/app.ts")["color"] == "rgb(57, 197, 207)"
    assert style("unused")["deco"] == "underline"
    assert style("italic")["style"] == "italic"
    assert style("dim")["opacity"] == "0.6"
    assert style("256-orange")["color"] == "rgb(255, 135, 0)"
    assert style("truecolor-pink")["color"] == "rgb(255, 105, 180)"
    inverse = style("inverse")
    assert inverse["color"] == "rgb(10, 13, 18)" and inverse["bg"] == "rgb(213, 221, 230)"
    texts = [t for _, t in log_rows(page)]
    assert "plain after escapes" in texts
    assert not any("\x1b" in t or "[0m" in t for t in texts)
    percent = page.locator("#extractions tbody tr").filter(has=page.locator("td.ext-name", has_text=re.compile("^percent$")))
    expect(percent).to_have_count(12)
    expect(percent.first.locator("td.ext-value")).to_have_text("100")
    expect(page.locator("#stat-clients")).to_have_text("1")  # the page's all-agents stream
    shot(page, "dashboard")


@pytest.mark.slow
def test_start_form_shows_the_servers_error_message(page: Page, make_server: Callable[..., Server]) -> None:
    """When the server refuses a start, its JSON error message appears next to the form."""
    server = make_server()
    open_dashboard(page, server.url, token=server.token)
    expected = server.request("POST", "/api/agents", {"name": "bad name!", "command": ["true"]}).json()["error"]["message"]
    page.fill("#start-form [name=name]", "bad name!")
    page.fill("#start-form [name=command]", "true")
    page.click("#start-btn")
    expect(page.locator("#start-error")).to_have_text(expected)

    expected = server.request("POST", "/api/agents", {"name": "p", "profile": "no-such-profile"}).json()["error"]["message"]
    page.fill("#start-form [name=name]", "p")
    page.fill("#start-form [name=profile]", "no-such-profile")
    page.fill("#start-form [name=command]", "")
    page.click("#start-btn")
    expect(page.locator("#start-error")).to_have_text(expected)
    expect(page.locator("#agent-list li")).to_have_count(0)


@pytest.mark.slow
def test_stopping_an_agent_from_the_page_turns_its_badge_to_exited(page: Page, server: Server) -> None:
    """An agent started from the form and stopped with the Stop button ends up exited in the list and header."""
    open_dashboard(page, server.url, token=server.token)
    if page.locator("#start-panel").get_attribute("open") is None:
        page.click("#start-panel summary")  # folded: this module's server has agents already
    page.fill("#start-form [name=name]", "sleeper")
    page.fill(
        "#start-form [name=command]",
        f"{sys.executable} -u -c 'import time; print(\"ready\"); time.sleep(600)'",
    )
    page.click("#start-btn")
    expect(page.locator("#start-error")).to_be_hidden()
    expect(page.locator("#viewer-title")).to_have_text("sleeper")
    wait_for_row(page, "ready")
    badge = agent_item(page, "sleeper").locator(".badge")
    expect(badge).to_have_text("running")

    page.click("#stop-btn")
    expect(badge).to_have_text(re.compile(r"^exited "))
    expect(page.locator("#viewer-badge")).to_have_text(re.compile(r"^exited "))
    expect(page.locator("#stop-btn")).to_be_disabled()
    expect(page.locator("#input-text")).to_be_disabled()
    assert server.get("/api/agents/sleeper")["state"] == "exited"


@pytest.mark.slow
def test_restart_from_the_page_follows_the_new_run(page: Page, server: Server) -> None:
    """Restarting a finished agent from the page reopens its stream and shows the new run after a separator."""
    server.create(name="again", command=python_agent("print('hello from a run')"))
    open_dashboard(page, server.url, "again", token=server.token)
    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "done")
    expect(page.locator("#restart-btn")).to_be_enabled()

    page.click("#restart-btn")
    expect(page.locator("#term-lines .row.sep:not([hidden])")).to_have_text("run 2")
    expect(page.locator("#term-lines .row.log")).to_have_count(2)
    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "done")
    expect(agent_item(page, "again").locator(".cell.restarts")).to_have_attribute("title", "1 restart (run 2)")
    assert [t for _, t in log_rows(page)] == ["hello from a run", "hello from a run"]


def test_refused_stream_shows_the_error_and_retry_recovers(page: Page, server: Server) -> None:
    """A stream the server refuses shows its error message and a Retry button that reconnects once it works."""
    open_dashboard(page, server.url, "later", token=server.token)
    conn = page.locator("#viewer-conn")
    expect(conn).to_have_attribute("data-state", "error")
    message = server.request("GET", "/api/agents/later/stream").json()["error"]["message"]
    expect(conn.locator(".conn-text")).to_have_text(f"error — {message}")
    expect(page.locator("#term-placeholder")).to_have_text("Waiting for output…")

    server.create(name="later", command=python_agent("print('here now')"))
    conn.locator(".conn-retry").click()
    wait_for_row(page, "here now")
    expect(conn).to_have_attribute("data-state", "done")
    expect(conn.locator(".conn-retry")).to_be_hidden()


@pytest.mark.slow
def test_reconnects_after_a_dropped_connection_and_shows_every_line_once(
    page: Page, make_server: Callable[..., Server], proxy_to: Callable[..., Any]
) -> None:
    """After the connection drops, the page says it is reconnecting, then shows what it missed, each line once."""
    server = make_server(env=FAST_RETRY)
    proxy = proxy_to(server.url)
    server.create(name="chatty", command=python_agent(BEFORE_AND_AFTER.format(n=100)))
    open_dashboard(page, proxy.url, "chatty", token=server.token)
    wait_for_row(page, "before 100")

    proxy.hold()
    assert proxy.drop() > 0
    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "reconnecting")
    # Meanwhile the agent goes on: everything after this is only reachable by resuming.
    assert server.request("POST", "/api/agents/chatty/input", {"data": "go\n"}).status == 204
    wait_complete(server, "chatty")
    proxy.release()

    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "done")
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")
    rows = log_rows(page)
    assert rows == history_lines(server, "chatty")
    assert collections.Counter(t for _, t in rows).most_common(1)[0][1] == 1
    assert rows[-1][1] == "after 100 (go)"
    expect(agent_item(page, "chatty").locator(".badge")).to_have_text("exited 0")


@pytest.mark.slow
def test_slow_consumer_drop_is_survived_without_loss(
    page: Page, make_server: Callable[..., Server], proxy_to: Callable[..., Any]
) -> None:
    """When the server drops the page as a slow consumer, the page reconnects and still shows every line once."""
    server = make_server(env={**FAST_RETRY, "AGENT_SUPERVISOR_QUEUE_SIZE": "50"})
    proxy = proxy_to(server.url, rcvbuf=4096)
    # Prints kilobyte lines from "go" until "stop": as long as it takes to back up any buffers.
    code = (
        "import select, sys\n"
        "print('ready'); sys.stdin.readline()\n"
        "i = 0\n"
        "while not select.select([sys.stdin], [], [], 0)[0]:\n"
        "    for _ in range(50):\n"
        "        i += 1; print(f'bulk {i:05d} ' + 'x' * 1000)\n"
        "print('stopped')\n"
    )
    server.create(name="bulk", command=python_agent(code))
    open_dashboard(page, proxy.url, "bulk", token=server.token)
    wait_for_row(page, "ready")

    proxy.stall()  # the page stops reading: the server's queue for it fills up
    assert server.request("POST", "/api/agents/bulk/input", {"data": "go\n"}).status == 204
    wait_for(lambda: server.get("/api/sse/stats")["clients_dropped_slow"] >= 1, 30, 0.05, "a slow-consumer drop")
    assert server.request("POST", "/api/agents/bulk/input", {"data": "stop\n"}).status == 204
    wait_complete(server, "bulk")
    proxy.flow()

    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "done", timeout=30_000)
    rows = log_rows(page)
    assert rows == history_lines(server, "bulk")[-len(rows):]
    assert rows[-1][1] == "stopped"
    assert len({n for n, _ in rows}) == len(rows)


@pytest.mark.slow
def test_bounded_buffer_holds_at_its_limit_under_20000_lines(page: Page, server: Server, shot: Callable[[Page, str], Any]) -> None:
    """20,000 lines leave exactly the newest 5,000 in the DOM, never more, and the page keeps up."""
    page.add_init_script(
        """window.__maxRows = 0;
           new MutationObserver(() => {
             const el = document.getElementById('term-lines');
             if (el) window.__maxRows = Math.max(window.__maxRows, el.childElementCount);
           }).observe(document, {childList: true, subtree: true});"""
    )
    server.create(name="flood", command=python_agent("for i in range(1, 20001): print(f'line {i} ' + 'x' * 60)"))
    open_dashboard(page, server.url, "flood", token=server.token)
    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "done", timeout=45_000)
    wait_for_row(page, "line 20000 " + "x" * 60)

    rows = log_rows(page)
    assert len(rows) == 5000
    assert [n for n, _ in rows] == list(range(15001, 20001))
    assert page.evaluate("window.__maxRows") <= 5000
    expect(page.locator("#line-status")).to_have_text("5,000 lines (oldest 15,000 dropped)")
    # Still responsive: the filter answers at once.
    page.fill("#filter", "line 1999")
    expect(page.locator("#term-lines .row.log:not([hidden])")).to_have_count(10)  # 19990..19999
    shot(page, "dashboard-20000-lines")


@pytest.mark.slow
def test_auto_scroll_pauses_when_scrolled_up_and_resumes_with_the_button(page: Page, server: Server) -> None:
    """Scrolling up stops following new lines; the resume button jumps back to the bottom and follows again."""
    server.create(name="scroll", command=python_agent(BEFORE_AND_AFTER.format(n=200)))
    open_dashboard(page, server.url, "scroll", token=server.token)
    wait_for_row(page, "before 200")
    scroller = page.locator("#term-scroll")
    at_bottom = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight < 30"
    # Functions, not bare expressions: Playwright evals a bare expression, which the CSP forbids.
    page.wait_for_function(f"() => ({at_bottom})(document.getElementById('term-scroll'))")

    scroller.hover()
    page.mouse.wheel(0, -100_000)  # to the very top, however the wheel is animated
    page.wait_for_function("() => document.getElementById('term-scroll').scrollTop === 0")
    expect(page.locator("#resume")).to_be_visible()
    top = 0
    page.fill("#input-text", "more")
    page.press("#input-text", "Enter")
    wait_for_row(page, "after 200 (more)")
    expect(page.locator("#resume")).to_contain_text("new")
    assert scroller.evaluate("(el) => el.scrollTop") == top, "the view held still while lines arrived"

    page.click("#resume")
    expect(page.locator("#resume")).to_be_hidden()
    assert scroller.evaluate(at_bottom)


@pytest.mark.slow
def test_filter_extractions_and_stats(page: Page, server: Server) -> None:
    """The filter narrows the visible lines, extractions fill the table, and stats poll the server."""
    code = "for i in range(1, 21): print(f'item {i}: ' + ('error: broken ' + str(i) if i % 5 == 0 else 'fine'))"
    server.create(name="mixed", command=python_agent(code), extractors=[{"name": "broken", "pattern": r"broken (?P<value>\d+)"}])
    open_dashboard(page, server.url, "mixed", token=server.token)
    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "done")
    expect(page.locator("#term-lines .row.log")).to_have_count(20)

    page.fill("#filter", "ERROR")
    expect(page.locator("#term-lines .row.log:not([hidden])")).to_have_count(4)
    page.fill("#filter", "nothing like this")
    expect(page.locator("#term-placeholder")).to_have_text("No lines match the filter.")
    page.fill("#filter", "")
    expect(page.locator("#term-lines .row.log:not([hidden])")).to_have_count(20)

    table = page.locator("#extractions tbody tr")
    expect(table.filter(has=page.locator("td.ext-name", has_text=re.compile("^broken$")))).to_have_count(4)
    newest = table.filter(has=page.locator("td.ext-name", has_text=re.compile("^broken$"))).first
    expect(newest.locator("td")).to_have_text(["broken", "20", "20", re.compile(r"^\d\d:\d\d:\d\d$")])

    # The stats are live: a second page's streams show up in the next poll.
    published = server.get("/api/sse/stats")["events_published"]
    expect(page.locator("#stat-events")).to_have_text(re.compile(r"^[\d,]+$"))
    page.wait_for_function(
        "(n) => Number(document.getElementById('stat-events').textContent.replace(/,/g, '')) >= n", arg=published
    )
    expect(page.locator("#stat-clients")).to_have_text(re.compile(r"^[1-9]"))


@pytest.mark.slow
def test_reset_from_a_wiped_server_clears_the_view_and_takes_the_replay(
    page: Page, make_server: Callable[..., Server], proxy_to: Callable[..., Any]
) -> None:
    """Resuming against a server whose history restarted below our last id clears the view and shows its history."""
    waiting = "import sys\nfor line in {lines!r}: print(line)\nsys.stdin.readline()\n"
    # One configured token for both (a wiped data dir, not a new token): the session holds.
    first = make_server(env=FAST_RETRY, token="same-token-for-both")
    proxy = proxy_to(first.url)
    first.create(name="same", command=python_agent(waiting.format(lines=[f"old {i}" for i in range(1, 41)])))
    open_dashboard(page, proxy.url, "same", token=first.token)
    wait_for_row(page, "old 40")

    # A second server (a wiped data directory) with an agent of the same name, still running.
    second = make_server(env=FAST_RETRY, token="same-token-for-both")
    second.create(name="same", command=python_agent(waiting.format(lines=["new 1", "new 2"])))
    with second.stream("/api/agents/same/stream") as stream:
        stream.until(lambda e: e.event == "log" and "new 2" in e.data)
    proxy.hold()
    proxy.drop()
    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "reconnecting")
    proxy.target = ("127.0.0.1", second.port)
    proxy.release()

    expect(page.locator("#viewer-conn")).to_have_attribute("data-state", "connected")
    wait_for_row(page, "new 2")
    assert [t for _, t in log_rows(page)] == ["new 1", "new 2"]
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#agent-list li")).to_have_count(1)
    expect(agent_item(page, "same").locator(".badge")).to_have_text("running")


@pytest.mark.slow
def test_token_is_asked_once_and_kept_for_the_tab_only(
    page: Page, make_server: Callable[..., Server], shot: Callable[[Page, str], Any]
) -> None:
    """Opened without the link's token, the page asks for it once (again if refused) and keeps
    it in this tab's sessionStorage: no cookie, nothing in localStorage; a reload needs no prompt."""
    server = make_server(token="s3cret-token-for-the-tab")
    server.create(name="guarded", command=python_agent("print('behind a token')"))
    page.goto(server.url + "/#agent=guarded")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    shot(page, "dashboard-token-prompt")
    page.fill("#token-input", "wrong")
    page.click("#token-ok")
    expect(page.locator("#token-message")).to_contain_text("refused")
    page.fill("#token-input", "s3cret-token-for-the-tab")
    page.click("#token-ok")
    expect(dialog).to_be_hidden()
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")
    wait_for_row(page, "behind a token")
    expect(page.locator("#stat-events")).to_have_text(re.compile(r"^[\d,]+$"))
    assert page.evaluate("window.agentSupervisor.tokenPrompts") == 2  # the first ask, then "refused"
    assert page.evaluate("() => JSON.stringify(sessionStorage)") == '{"agent-supervisor-token":"s3cret-token-for-the-tab"}'
    assert page.evaluate("() => JSON.stringify(localStorage) + document.cookie") == "{}"
    assert page.context.cookies() == []

    page.reload()
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")
    wait_for_row(page, "behind a token")
    assert page.evaluate("window.agentSupervisor.tokenPrompts") == 0
    expect(dialog).to_be_hidden()


def test_the_printed_link_signs_in_and_leaves_the_address_bar(page: Page, server: Server) -> None:
    """The link ``serve`` prints opens the dashboard without a prompt; the token is gone from the
    address bar (the #agent= part stays), and the test page it links to (a new tab) has it too."""
    server.create(name="linked", command=python_agent("print('via the link')"))
    page.goto(f"{server.dashboard}#agent=linked")
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")
    wait_for_row(page, "via the link")
    assert page.url == f"{server.url}/#agent=linked"
    assert page.evaluate("window.agentSupervisor.tokenPrompts") == 0
    assert page.evaluate("window.agentSupervisor.loggedInFromAddress") is True
    with page.context.expect_page() as popup_info:
        page.click("a.toplink")
    popup = popup_info.value
    # Its module script sets the form from the address on load: fill it after that, not before.
    popup.wait_for_load_state("domcontentloaded")
    popup.fill("#agent", "linked")
    popup.click("#connect")
    expect(popup.locator("#status")).to_have_attribute("data-state", "done")
    expect(popup.locator("#log .line .tx").first).to_have_text("via the link")


@pytest.mark.slow
def test_no_credential_reaches_another_server_on_the_same_host(
    page: Page, server: Server, other_site: OtherSite
) -> None:
    """Signed in by the printed link, with both pages' streams live, the browser sends another
    web server on another port of 127.0.0.1 nothing of ours: no cookie, no Authorization, the
    token nowhere in a request. Back on the dashboard, and on the test page, everything still
    works (streams included) with no prompt: the tab kept the token."""
    assert server.token is not None
    agent = "across-ports"
    server.create(name=agent, command=python_agent(
        "import sys\nprint('first line')\nsys.stdin.readline()\nprint('second line')"))
    page.goto(f"{server.dashboard}#agent={agent}")
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")
    wait_for_row(page, "first line")
    other_site.pages["/sub.html"] = f"<!doctype html><img src='{other_site.url}/pixel.png'><title>x</title>"
    page.goto(other_site.url + "/")
    page.goto(other_site.url + "/sub.html")
    page.wait_for_function("() => document.images[0].complete")
    page.evaluate("(u) => fetch(u, {credentials: 'include'}).then((r) => r.text())", other_site.url + "/api/agents")
    assert {"/", "/sub.html", "/pixel.png", "/api/agents"} <= {r.path for r in other_site.requests}
    for seen in other_site.requests:
        names = {name.lower() for name, _ in seen.headers}
        assert not names & {"cookie", "authorization"}, seen
        assert all(server.token not in value for _, value in seen.headers) and server.token not in seen.path, seen
    assert page.context.cookies() == []

    page.goto(f"{server.url}/#agent={agent}")
    expect(page.locator("#global-conn")).to_have_attribute("data-state", "connected")
    wait_for_row(page, "first line")
    assert server.request("POST", f"/api/agents/{agent}/input", {"data": "go\n"}).status == 204
    wait_for_row(page, "second line")  # live, on the agent's own stream
    expect(agent_item(page, agent).locator(".badge")).to_have_text("exited 0")  # on /api/stream
    assert page.evaluate("window.agentSupervisor.tokenPrompts") == 0
    page.goto(f"{server.url}/test_sse.html?agent={agent}&connect=1")
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    expect(page.locator("#log .line .tx").last).to_have_text("second line")
    assert page.context.cookies() == []


# ------------------------------------------------------------------------------ the SSE test page


def test_sse_test_page_connects_and_fills_its_panels(page: Page, server: Server, shot: Callable[[Page, str], Any]) -> None:
    """The test page shows raw frames with their ids, log lines, extractions and state changes, with counters."""
    code = "for i in range(1, 11): print(f'\\x1b[32mprogress\\x1b[0m {i * 10}%')"
    server.create(name="tp", command=python_agent(code), extractors=[{"name": "percent", "pattern": r"(?P<value>\d+)%"}])
    wait_complete(server, "tp")
    history = server.get("/api/agents/tp/events?limit=10000")["events"]

    page.goto(server.url + f"/test_sse.html?token={server.token}")
    expect(page).to_have_url(server.url + "/test_sse.html")  # the token left the address bar
    page.fill("#agent", "tp")
    page.click("#connect")
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    expect(page.locator("#count-events")).to_have_text(str(len(history) + 1))  # + connected
    expect(page.locator("#count-lines")).to_have_text("10")
    expect(page.locator("#count-extractions")).to_have_text("10")
    expect(page.locator("#log .line")).to_have_count(10)
    expect(page.locator("#log .line .tx").last).to_have_text("progress 100%")
    expect(page.locator("#extractions .item")).to_have_count(10)
    expect(page.locator("#states .item .k", has_text=re.compile("^tp: complete$"))).to_have_count(1)

    frames = page.locator("#raw .frame").evaluate_all("(els) => els.map((e) => e.lastChild.textContent)")
    shot(page, "test_sse")
    assert frames[0] == "retry: 3000"
    assert frames[1].startswith("event: connected\ndata: ")
    ids = [int(m.group(1)) for f in frames if (m := re.match(r"id: (\d+)\n", f))]
    assert ids == [e["id"] for e in history]
    first_log = next(e for e in history if e["type"] == "log")
    assert f"id: {first_log['id']}\nevent: log\ndata: " in "\n\n".join(frames)

    # The history limit keeps each panel to its newest entries.
    page.goto(server.url + "/test_sse.html?agent=tp&connect=1&limit=5")
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    expect(page.locator("#raw .frame")).to_have_count(5)
    expect(page.locator("#raw .frame").last).to_have_attribute("data-event", "complete")
    expect(page.locator("#log .line")).to_have_count(5)
    expect(page.locator("#count-lines")).to_have_text("10")


@pytest.mark.slow
def test_sse_test_page_shows_every_run_of_an_agent_that_ran_several(page: Page, server: Server) -> None:
    """An ended agent's history holds a complete per run: the test page reads on past the first
    to the last run's, and stops there without reconnecting."""
    server.create(name="tp-runs", command=python_agent("for i in range(300): print(f'line {i} ' + 'x' * 80)"))
    wait_complete(server, "tp-runs")
    assert server.request("POST", "/api/agents/tp-runs/restart").status == 202
    wait_for(lambda: (lambda a: a["run"] == 2 and a["state"] == "exited")(server.get("/api/agents/tp-runs")),
             15, 0.05, "run 2 to end")
    page.goto(server.url + f"/test_sse.html?token={server.token}&agent=tp-runs&connect=1&limit=50")
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    expect(page.locator("#states .item .k", has_text=re.compile("^tp-runs: complete$"))).to_have_count(2)
    expect(page.locator("#count-lines")).to_have_text("600")
    expect(page.locator("#count-reconnects")).to_have_text("0")


@pytest.mark.slow
def test_sse_test_page_resumes_with_last_event_id(
    page: Page, make_server: Callable[..., Server], proxy_to: Callable[..., Any]
) -> None:
    """After a dropped connection the test page reconnects with Last-Event-ID and gets each event once."""
    server = make_server(env=FAST_RETRY)
    proxy = proxy_to(server.url)
    server.create(name="tp2", command=python_agent(BEFORE_AND_AFTER.format(n=20)))
    resumed: list[str] = []
    def note_resume(request: Any) -> None:
        if "last-event-id" in request.headers:
            resumed.append(request.headers["last-event-id"])

    page.on("request", note_resume)
    page.goto(proxy.url + f"/test_sse.html?agent=tp2&connect=1&token={server.token}")
    page.locator("#log .line .tx", has_text="before 20").wait_for()

    proxy.hold()
    proxy.drop()
    expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
    server.request("POST", "/api/agents/tp2/input", {"data": "x\n"})
    wait_complete(server, "tp2")
    proxy.release()

    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    expect(page.locator("#count-reconnects")).to_have_text("1")
    history = server.get("/api/agents/tp2/events?limit=10000")["events"]
    frames = page.locator("#raw .frame[data-id]").evaluate_all("(els) => els.map((e) => Number(e.dataset.id))")
    assert frames == [e["id"] for e in history], "every event exactly once, in order"
    assert len(resumed) == 1 and int(resumed[0]) < history[-1]["id"]
    lines = sum(1 for e in history if e["type"] == "log" and not e["data"].get("partial"))
    expect(page.locator("#count-lines")).to_have_text(str(lines))
