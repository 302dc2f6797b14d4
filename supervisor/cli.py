"""The ``agent-supervisor`` command: ``serve``, and a client for a running server.

Every client command talks HTTP through :mod:`supervisor.client` (stdlib only, blocking); only
``serve`` imports the server (Flask, gevent), inside its function, so the client starts fast
and works where the server's dependencies are not installed.

Conventions: agent output goes to stdout and nothing else does; notes, progress and
extractions go to stderr. An expected failure (server down, unknown agent, bad pattern, bad
flag) is one line on stderr and a non-zero status, never a traceback: 1 for a failure the
server reported or could not be reached for, 2 for a bad command line, 130 after Ctrl-C.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, NoReturn
from urllib.parse import quote

from . import runtime
from .client import (
    DEFAULT_URL,
    ApiError,
    Client,
    Follower,
    ServerUnreachable,
    SSEEvent,
    StreamTimeout,
)
from .runtime import TOKEN_ENV, URL_ENV

PROG = "agent-supervisor"

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: ``run`` of a command the server cannot find exits like a shell does.
EXIT_NOT_FOUND = 127

#: States of an agent that is not done (as in :mod:`supervisor.states`, not imported: the
#: client must not need the core).
ACTIVE_STATES = ("starting", "running", "stopping", "backoff")
#: States in which a new run has got as far as it will by itself (``restart`` waits for one).
SETTLED_STATES = ("running", "exited", "failed", "backoff")
#: How long ``stop`` waits for the end beyond the grace period before it reports a problem.
STOP_MARGIN_S = 20.0

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_YELLOW = "\x1b[33m"
_RED = "\x1b[31m"
_CYAN = "\x1b[36m"
_ERASE_LINE = "\r\x1b[K"


class UsageError(Exception):
    """A command line that cannot be right whatever the server says; exits with status 2."""


# --------------------------------------------------------------------------- terminal output


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _colour_wanted(choice: str, stream: IO[str]) -> bool:
    """``--color``: ``auto`` means a terminal that is not dumb, and no ``NO_COLOR``."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return _is_tty(stream) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class Status:
    """One line of progress on stderr ("connecting...", "replaying 1,200 / 5,000"), redrawn in
    place on a terminal; elsewhere only ``note`` lines are written, so logs stay readable.
    """

    def __init__(self, err: IO[str]) -> None:
        self.err = err
        self.tty = _is_tty(err)
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
        self.err.write(_ERASE_LINE + self._paint(_DIM, text))
        self.err.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.err.write(_ERASE_LINE)
            self.err.flush()
            self._shown = False

    def note(self, text: str, style: str = _DIM) -> None:
        self.clear()
        self.err.write(self._paint(style, f"{PROG}: {text}") + "\n")
        self.err.flush()

    def _paint(self, style: str, text: str) -> str:
        return f"{style}{text}{_RESET}" if self.colour else text


def _exit_code(data: dict[str, Any]) -> int:
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


def _describe_end(data: dict[str, Any]) -> str:
    state = data.get("state", "exited")
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
        facts.append(_duration(float(data["duration_s"])))
    return how + (f" ({', '.join(facts)})" if facts else "")


def _duration(seconds: float) -> str:
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
    pipe partial lines are skipped, since their final version always follows. Colours are kept
    or stripped (the event's ``plain``). Extractions, state changes and the end of a run are
    notes on stderr. JSON mode: every event's envelope, one per line, nothing else on stdout.
    """

    def __init__(self, out: IO[str], status: Status, *, colour: bool, json_mode: bool = False,
                 show_names: bool = False, quiet: bool = False) -> None:
        self.out = out
        self.status = status
        self.colour = colour
        self.json_mode = json_mode
        self.show_names = show_names
        self.quiet = quiet
        self.redraw = _is_tty(out) and not show_names
        self._partial: tuple[str, Any, Any] | None = None  # (agent, run, line_num) on screen
        self.complete: dict[str, Any] | None = None
        self.lines = 0
        self._started: set[str] = set()

    def wire(self, event: SSEEvent) -> None:
        """An event from a stream, including the ones that exist only on the wire."""
        if event.event in ("connected", "ping"):
            return
        if event.event == "reset":
            info = _json_or(event.data, {})
            if self.json_mode:
                self._emit_json(json.dumps({"type": "reset", "data": info}))
            if info.get("missed"):
                self.status.note(f"{info['missed']} earlier events are no longer kept; "
                                 f"continuing from event {info.get('first_available')}",
                                 _YELLOW)
            return
        if event.event == "error" and event.id is None:
            reason = _json_or(event.data, {}).get("reason", event.data)
            self.status.note(f"the server dropped this stream ({reason}); resuming", _YELLOW)
            return
        envelope = _json_or(event.data, None)
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
        elif kind == "state":
            self._state(name, data)
        elif kind == "error":
            self.status.note(f"{name}: {data.get('message', data.get('code', 'error'))}", _RED)
        elif kind == "complete":
            self.complete = data
            if not self.quiet:
                self.status.note(f"{name} {_describe_end(data)}")
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
            line = (f"{_CYAN}{prefix}{_RESET}" if self.colour else prefix) + line
        key = (name, data.get("run"), data.get("line_num"))
        if data.get("partial"):
            if not self.redraw:
                return
            if self._partial is not None and self._partial != key:
                self.out.write("\n")  # another line started: leave the old one as it was
            self.status.clear()
            self.out.write(_ERASE_LINE + line + (_RESET if self.colour else ""))
            self.out.flush()
            self._partial = key
            return
        self.status.clear()
        if self._partial is not None:
            self.out.write(_ERASE_LINE if self._partial == key else "\n")
            self._partial = None
        self.out.write(line + (_RESET if self.colour and "\x1b" in line else "") + "\n")
        self.out.flush()
        self.lines += 1

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
        err.err.write((f"{_BOLD}{_YELLOW}{text}{_RESET}" if err.colour else text) + "\n")
        err.err.flush()

    def _state(self, name: str, data: dict[str, Any]) -> None:
        state = data.get("state")
        if self.quiet:
            return
        if state == "starting":
            if name in self._started:  # a restart seen live, or the next run in a history
                self.status.note(f"{name}: starting again (run {data.get('run', '?')})")
            self._started.add(name)
        elif state == "backoff":
            self.status.note(f"{name}: ended; restarting in {data.get('restart_in_s', '?')}s "
                             f"(attempt {data.get('attempt', '?')})", _YELLOW)
        elif state == "failed":
            self.status.note(f"{name}: could not start: {data.get('reason', '')}", _RED)
        elif state == "lost":
            self.status.note(f"{name}: lost ({data.get('reason', 'the server died')})", _YELLOW)

    def _end_partial(self) -> None:
        if self._partial is not None and _is_tty(self.status.err) and self.redraw:
            # stderr shares the screen: finish the partial line so the note does not overwrite it
            self.out.write("\n")
            self.out.flush()
            self._partial = None

    def finish(self) -> None:
        """Leave the terminal on a fresh line (a partial line may still be on screen)."""
        if self._partial is not None:
            self.out.write("\n")
            self.out.flush()
            self._partial = None
        self.status.clear()


def _json_or(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default


# --------------------------------------------------------------------------- helpers


def _connection(args: argparse.Namespace) -> runtime.Connection:
    """The server and token: flags, then the environment, then the data dir's server.json."""
    connection = runtime.resolve(getattr(args, "url", None), getattr(args, "token", None),
                                 getattr(args, "data_dir", None))
    args.connection = connection  # for the error message if it cannot be reached
    return connection


def _client(args: argparse.Namespace) -> Client:
    connection = _connection(args)

    def renew() -> str | None:
        # The runtime file again: a server restarted meanwhile may have a new generated token.
        fresh = runtime.resolve(getattr(args, "url", None), getattr(args, "token", None),
                                getattr(args, "data_dir", None))
        return fresh.token if fresh.url == connection.url else None

    return Client(connection.url, connection.token, renew=renew)


def _agent_path(name: str) -> str:
    return f"/api/agents/{quote(name, safe='')}/stream"


def _agent_or_none(client: Client, name: str) -> dict[str, Any] | None:
    try:
        return client.agent(name)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _is_loopback(client: Client) -> bool:
    from .config import is_loopback  # the client side stays light: config loads on demand

    return is_loopback(client.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0])


def _pairs(items: Iterable[str], what: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` arguments; a missing ``=`` or name is a usage error."""
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{what} must look like NAME=VALUE, got {item!r}")
        pairs.append((name, value))
    return pairs


def _follower(client: Client, path: str, last_id: str | None, status: Status, *,
              stop_at_complete: bool = True, give_up_s: float | None = 60.0) -> Follower:
    def reconnecting(delay: float, cause: BaseException | None) -> None:
        why = "the server ended the stream" if cause is None else str(cause)
        text = f"connection lost ({why}); reconnecting in {delay:.1f}s"
        if status.tty:
            status.show(text)
        elif follower.connections and not state["noted"]:
            status.note(text)
            state["noted"] = True

    def connected(attempt: int) -> None:
        if attempt and (state["noted"] or status.tty):
            status.note("reconnected; resuming after event " + (follower.last_event_id or "0"))
        state["noted"] = False

    state = {"noted": False}
    follower = Follower(client, path, last_id, stop_at_complete=stop_at_complete,
                        give_up_s=give_up_s, on_reconnect=reconnecting, on_connect=connected)
    return follower


def _history(client: Client, name: str, status: Status) -> tuple[list[dict[str, Any]], int]:
    """An agent's whole retained history through the REST endpoint, with progress.

    Returns the envelopes and the id to resume a stream after.
    """
    target = int(client.agent(name).get("last_event_id") or 0)
    events: list[dict[str, Any]] = []
    after = 0
    last = 0
    while True:
        page = client.events(name, after=after, limit=10000)
        batch = page.get("events") or []
        if page.get("reset") and page.get("missed"):
            status.note(f"{page['missed']} earlier events are no longer kept", _YELLOW)
        last = max(last, int(page.get("last_event_id") or 0))
        if not batch:
            break
        events.extend(batch)
        after = int(batch[-1]["id"])
        status.show(f"reading history: {len(events):,} events (up to event {after:,} of "
                    f"{max(target, last):,})", throttle=0.1)
    status.clear()
    return events, (int(events[-1]["id"]) if events else last)


def _last_lines(events: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The events from the one that holds the ``count``-th last line on (log lines only
    count; a partial line and its final version count once)."""
    seen: set[tuple[Any, Any]] = set()
    start = len(events)
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event.get("type") != "log":
            continue
        data = event.get("data") or {}
        key = (data.get("run"), data.get("line_num"))
        if key in seen:
            start = index
            continue
        if len(seen) == count:
            break
        seen.add(key)
        start = index
    if count == 0:
        return []
    return events[start:]


# --------------------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server in this process until SIGINT/SIGTERM."""
    import logging

    from .config import load_config

    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.token and args.no_token:
        raise UsageError("--token and --no-token contradict each other")
    config = load_config(
        args.config, host=args.host, port=args.port, data_dir=args.data_dir, token=args.token,
        no_token=True if args.no_token else None,
    )
    config, generated = runtime.with_token(config)
    from api.server import run_server  # the server's dependencies load only for `serve`

    def ready(url: str) -> None:
        print(f"{PROG}: serving on {url}", flush=True)
        # The token is printed this once, for a person to click; it is never logged.
        if generated:
            print(f"{PROG}: open the dashboard at {runtime.dashboard_url(url, config.token)}\n"
                  f"{PROG}: on this machine `{PROG} list` and friends find the server and its token"
                  f" in {runtime.runtime_path(config.data_dir)}; `{PROG} token` prints it",
                  flush=True)
        else:
            how = " with the token you configured" if config.token else ""
            print(f"{PROG}: open the dashboard at {url}/{how}", flush=True)

    run_server(config, ready=ready, demo=args.demo)
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    """Print the token of the server (for curl), or with --link the dashboard's address."""
    connection = _connection(args)
    if connection.token is None:
        if connection.runtime is not None and connection.runtime.token is None:
            raise ApiError(f"the server at {connection.url} runs without a token (--no-token)")
        data_dir = getattr(args, "data_dir", None)
        where = f"{data_dir}/{runtime.RUNTIME_FILE}" if data_dir else f"the data dir's {runtime.RUNTIME_FILE}"
        raise ApiError(f"no token for {connection.url}: not in --token, ${TOKEN_ENV} or {where}"
                       f" (is `{PROG} serve` running{' with that data dir' if data_dir else ''}?)")
    print(runtime.dashboard_url(connection.url, connection.token) if args.link else connection.token)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Start an agent and follow it to its end; exit with its exit code."""
    client = _client(args)
    status = Status(sys.stderr)
    command = list(args.argv) + list(getattr(args, "after_dashes", []))
    if not command and not args.profile:
        raise UsageError("nothing to run: give a command after --, or --profile")
    spec: dict[str, Any] = {"name": args.name}
    if args.profile:
        spec["profile"] = args.profile
        if command:
            spec["args"] = command
    else:
        spec["command"] = command
    if args.extract:
        spec["extractors"] = [{"name": name, "pattern": pattern, "flags": ""}
                              for name, pattern in _pairs(args.extract, "--extract")]
    if args.env:
        spec["env"] = dict(_pairs(args.env, "--env"))
    cwd = args.cwd if args.cwd is not None else (os.getcwd() if _is_loopback(client) else None)
    if cwd:
        spec["cwd"] = os.path.abspath(cwd) if _is_loopback(client) else cwd
    size = shutil.get_terminal_size((120, 40)) if _is_tty(sys.stdout) else None
    spec["cols"] = args.cols or (size.columns if size else 120)
    spec["rows"] = args.rows or (size.lines if size else 40)
    if args.restart:
        spec["restart"] = args.restart
    if args.grace is not None:
        spec["stop_grace_s"] = args.grace

    status.show(f"connecting to {client.url}...")
    previous = _agent_or_none(client, args.name)
    # Follow from the previous run's last event, so a re-used name shows only the new run.
    start_after = str(previous["last_event_id"]) if previous and previous.get("last_event_id") else None
    try:
        client.create(spec)
    except ApiError as exc:
        status.clear()
        if exc.code == "executable_not_found":
            status.note(str(exc), _RED)
            return EXIT_NOT_FOUND
        raise
    status.clear()
    renderer = Renderer(sys.stdout, status, colour=_colour_wanted(args.color, sys.stdout),
                        json_mode=args.json, quiet=args.quiet)
    follower = _follower(client, _agent_path(args.name), start_after, status)
    return _follow_run(client, args, follower, renderer, status)


def _follow_run(client: Client, args: argparse.Namespace, follower: Follower,
                renderer: Renderer, status: Status) -> int:
    """Print the run until it completes; Ctrl-C asks (once) whether to stop it or detach."""
    decided: str | None = None
    while True:
        try:
            for event in follower:
                renderer.wire(event)
            break
        except KeyboardInterrupt:
            renderer.finish()
            if decided is not None:
                status.note(f"detached; {args.name} is "
                            + ("stopping" if decided == "stop" else "still running"))
                return EXIT_INTERRUPTED
            decided = _ask_on_interrupt(args)
            if decided == "detach":
                status.note(f"detached; {args.name} keeps running. Follow it again with: "
                            f"{PROG} tail {args.name} --follow")
                return EXIT_INTERRUPTED
            status.note(f"stopping {args.name}... (Ctrl-C again to detach)")
            client.stop(args.name)
    renderer.finish()
    if renderer.complete is None:
        # 204: the run ended before we saw its end; ask how it went.
        agent = client.agent(args.name)
        if not args.quiet and not args.json:
            status.note(f"{args.name} {_describe_end(agent)}")
        return _exit_code(agent)
    return _exit_code(renderer.complete)


def _ask_on_interrupt(args: argparse.Namespace) -> str:
    """``stop`` or ``detach``: from ``--on-interrupt``, else asked on the terminal."""
    if args.on_interrupt != "ask":
        return str(args.on_interrupt)
    if not (_is_tty(sys.stdin) and _is_tty(sys.stderr)):
        return "stop"
    while True:
        sys.stderr.write(f"\n{PROG}: stop agent {args.name!r} [s], or detach and leave it "
                         "running [d]? ")
        sys.stderr.flush()
        try:
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            return "stop"  # a second Ctrl-C at the question: the user wants it to end
        if not answer:
            return "stop"
        answer = answer.strip().lower()
        if answer in ("s", "stop", "y", "yes", ""):
            return "stop"
        if answer in ("d", "detach", "n", "no"):
            return "detach"


def cmd_tail(args: argparse.Namespace) -> int:
    """Print an agent's output (or every agent's with --all), and follow it with --follow."""
    client = _client(args)
    status = Status(sys.stderr)
    colour = _colour_wanted(args.color, sys.stdout)
    if args.all:
        if args.name:
            raise UsageError("give an agent name or --all, not both")
        if args.last is not None:
            raise UsageError("--last needs an agent name; with --all use --from-start or nothing")
        renderer = Renderer(sys.stdout, status, colour=colour, json_mode=args.json,
                            show_names=True, quiet=args.quiet)
        status.show(f"connecting to {client.url}...")
        newest = max([int(agent.get("last_event_id") or 0) for agent in client.agents()] or [0])
        start = None if args.from_start or not newest else str(newest)
        follower = _follower(client, "/api/stream", start, status, stop_at_complete=False,
                             give_up_s=None)
        _print_stream(follower, renderer, replay_until=newest if args.from_start else 0)
        return EXIT_OK
    if not args.name:
        raise UsageError("give an agent name, or --all")
    renderer = Renderer(sys.stdout, status, colour=colour, json_mode=args.json,
                        quiet=args.quiet)
    status.show(f"connecting to {client.url}...")
    events, last_id = _history(client, args.name, status)
    if not args.from_start:
        count = 10 if args.last is None else args.last
        if args.json:
            events = events[-count:] if count else []
        else:
            events = _last_lines(events, count)
    for envelope in events:
        renderer.envelope(envelope)
    if args.follow and (renderer.complete is None or _later_run_exists(client, args.name, last_id)):
        follower = _follower(client, _agent_path(args.name), str(last_id) if last_id else None,
                             status, give_up_s=None)
        _print_stream(follower, renderer)
    renderer.finish()
    if args.follow and renderer.complete is not None:
        return _exit_code(renderer.complete) if args.exit_code else EXIT_OK
    return EXIT_OK


def _later_run_exists(client: Client, name: str, last_id: int) -> bool:
    """A ``complete`` was printed from history; is there more (a new run) after it?"""
    agent = client.agent(name)
    return int(agent.get("last_event_id") or 0) > last_id


def _print_stream(follower: Follower, renderer: Renderer, replay_until: int = 0) -> None:
    """Render a stream to its end; while the ids are below ``replay_until`` (history being
    replayed), show how far the replay got."""
    status = renderer.status
    try:
        for event in follower:
            renderer.wire(event)
            if replay_until and event.id and event.id.isdigit():
                if int(event.id) < replay_until:
                    status.show(f"replaying history: event {int(event.id):,} of "
                                f"{replay_until:,}", throttle=0.1)
                else:
                    replay_until = 0
                    status.clear()
    finally:
        renderer.finish()


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop an agent (SIGTERM, then SIGKILL after its grace period) and wait until it ended."""
    client = _client(args)
    status = Status(sys.stderr)
    started = time.monotonic()
    before = client.agent(args.name)
    if before.get("state") not in ACTIVE_STATES:
        status.note(f"{args.name} is not running ({_describe_end(before)})")
        return EXIT_OK
    after = client.stop(args.name, args.grace)
    if args.no_wait:
        status.note(f"stopping {args.name}")
        return EXIT_OK
    status.show(f"stopping {args.name}...")
    renderer = Renderer(io.StringIO(), status, colour=False, quiet=True)  # only its end counts
    follower = _follower(client, _agent_path(args.name), str(after.get("last_event_id") or "")
                         or None, status)
    # The server escalates to SIGKILL after the grace period, so the end cannot take long.
    follower.deadline = time.monotonic() + (args.grace or 10.0) + STOP_MARGIN_S
    try:
        for event in follower:
            renderer.wire(event)
    except StreamTimeout:
        pass  # asked below: the state says whether it ended
    finally:
        status.clear()
    final = renderer.complete or client.agent(args.name)
    if renderer.complete is None and final.get("state") in ACTIVE_STATES:
        raise ApiError(f"{args.name} is still {final.get('state')} "
                       f"{time.monotonic() - started:.0f}s after it was asked to stop")
    print(f"{args.name}: {_describe_end(final)}")
    return EXIT_OK


def cmd_restart(args: argparse.Namespace) -> int:
    """End the agent's current run, if any, and start the next; wait until it runs (or fails)."""
    client = _client(args)
    status = Status(sys.stderr)
    before = client.agent(args.name)
    after = client.restart(args.name)
    if args.no_wait:
        status.note(f"restarting {args.name}")
        return EXIT_OK
    status.show(f"restarting {args.name}...")
    follower = _follower(client, _agent_path(args.name), str(after.get("last_event_id") or "") or None,
                         status, stop_at_complete=False)
    # The old run gets its grace period, then SIGKILL; the new one must then at least start.
    follower.deadline = time.monotonic() + 10.0 + STOP_MARGIN_S
    old_run = before.get("run") or 0
    try:
        for event in follower:
            if event.event == "state":
                data = event.json().get("data", {})
                if (data.get("run") or 0) > old_run and data.get("state") in SETTLED_STATES:
                    break
    except StreamTimeout:
        pass  # asked below
    finally:
        status.clear()
    now = client.agent(args.name)
    if (now.get("run") or 0) <= old_run:
        raise ApiError(f"{args.name} did not start again (it is {now.get('state')})")
    if now.get("state") == "failed":
        raise ApiError(f"{args.name}: {_describe_end(now)}")
    print(f"{args.name}: {now.get('state')}, run {now.get('run')}" + (f", pid {now['pid']}" if now.get("pid") else ""))
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    """Delete an agent and its history; a running one only with --force, which stops it first."""
    client = _client(args)
    agent = client.agent(args.name)
    if agent.get("state") in ACTIVE_STATES:
        if not args.force:
            raise UsageError(f"{args.name} is {agent.get('state')}: stop it first, or use --force")
        cmd_stop(argparse.Namespace(**{**vars(args), "no_wait": False}))
    client.delete(args.name)
    print(f"{args.name}: deleted, with its history")
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    """Type text into an agent's terminal, then Enter (a carriage return) unless -n."""
    text = " ".join(args.text)
    client = _client(args)
    client.send_input(args.name, text if args.no_newline else text + "\r")
    return EXIT_OK


def _table(rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> str:
    """Columns padded to their widest cell; columns in ``right`` aligned right (numbers)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    aligned = set(right)
    out = []
    for row in rows:
        cells = [cell.rjust(widths[i]) if i in aligned else cell.ljust(widths[i])
                 for i, cell in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _uptime_or_exit(agent: dict[str, Any]) -> str:
    if agent.get("state") in ("starting", "running", "stopping"):
        return _duration(float(agent.get("duration_s") or 0.0))
    if agent.get("signal"):
        return str(agent["signal"])
    if agent.get("exit_code") is not None:
        return f"exit {agent['exit_code']}"
    return "-"


def cmd_list(args: argparse.Namespace) -> int:
    """Every agent as a table (name, state, pid, uptime or exit code, lines, clients)."""
    agents = _client(args).agents()
    if args.json:
        print(json.dumps({"agents": agents}, indent=2))
        return EXIT_OK
    if not agents:
        print("no agents", file=sys.stderr)
        return EXIT_OK
    rows = [("NAME", "STATE", "PID", "UPTIME/EXIT", "LINES", "CLIENTS")]
    for agent in sorted(agents, key=lambda a: str(a.get("name"))):
        running = agent.get("state") in ("starting", "running", "stopping")
        rows.append((
            str(agent.get("name")), str(agent.get("state")),
            str(agent.get("pid")) if running and agent.get("pid") else "-",
            _uptime_or_exit(agent), str(agent.get("lines", 0)), str(agent.get("clients", 0)),
        ))
    print(_table(rows, right=(2, 4, 5)))
    return EXIT_OK


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def cmd_stats(args: argparse.Namespace) -> int:
    """The server's stream statistics as tables, or raw with --json."""
    stats = _client(args).stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return EXIT_OK
    summary = [
        ("uptime", _duration(float(stats.get("uptime_s", 0)))),
        ("agents", f"{stats.get('total_agents', 0)}"),
        ("clients", (f"{stats.get('total_clients', 0)} "
                     f"({stats.get('all_stream_clients', 0)} on /api/stream)")),
        ("clients connected since start", f"{stats.get('clients_connected_total', 0):,}"),
        ("clients dropped (slow)", f"{stats.get('clients_dropped_slow', 0):,}"),
        ("events published", f"{stats.get('events_published', 0):,}"),
        ("events delivered", f"{stats.get('events_delivered', 0):,}"),
        ("bytes delivered", _size(float(stats.get("bytes_delivered", 0)))),
    ]
    print(_table(summary))
    per_agent = stats.get("agents") or {}
    if per_agent:
        print()
        rows = [("AGENT", "CLIENTS")] + [(name, str(count)) for name, count in
                                         sorted(per_agent.items())]
        print(_table(rows, right=(1,)))
    clients = stats.get("clients") or []
    if clients:
        print()
        rows = [("CLIENT", "AGENT", "FROM", "CONNECTED", "SENT", "QUEUED")]
        for client in clients:
            rows.append((
                str(client.get("id")), str(client.get("agent") or "(all)"),
                str(client.get("remote_addr", "-")), str(client.get("connected_at", "-")),
                f"{client.get('sent', 0):,}",
                f"{client.get('queued', 0)} ({_size(float(client.get('queued_bytes', 0)))})",
            ))
        print(_table(rows, right=(4,)))
    return EXIT_OK


# --------------------------------------------------------------------------- argument parsing


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (not usage + error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    # --url/--token are accepted before or after the command: SUPPRESS keeps a value given
    # before the command from being reset by the sub-parser's default.
    connection = _Parser(add_help=False)
    connection.add_argument("--url", default=argparse.SUPPRESS, metavar="URL",
                            help=f"server URL (default ${URL_ENV}, else the data dir's "
                                 f"{runtime.RUNTIME_FILE}, else {DEFAULT_URL})")
    connection.add_argument("--token", default=argparse.SUPPRESS,
                            help=f"API token (default ${TOKEN_ENV}, else the data dir's "
                                 f"{runtime.RUNTIME_FILE} when it names the same URL)")
    connection.add_argument("--data-dir", default=argparse.SUPPRESS, metavar="DIR",
                            help="the data dir of the server to find (default: the configured one)")
    output = _Parser(add_help=False)
    output.add_argument("--json", action="store_true",
                        help="one event per line as JSON (the API's envelope)")
    output.add_argument("--color", "--colour", choices=("auto", "always", "never"),
                        default="auto", help="keep ANSI colours (auto: on a terminal)")
    output.add_argument("-q", "--quiet", action="store_true",
                        help="no notes or extractions on stderr")

    parser = _Parser(prog=PROG, parents=[connection],
                     description="Run command-line agents under a PTY and stream their output.")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    serve = sub.add_parser("serve", help="run the server",
                           description="Run the server until Ctrl-C or SIGTERM.")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8151; 0 picks a free one)")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument("--data-dir", metavar="DIR", help="where history and agents are kept")
    serve.add_argument("--token", help="require this token on every API call (default: a new "
                                       "random one, printed once and kept in the data dir's "
                                       f"{runtime.RUNTIME_FILE})")
    serve.add_argument("--no-token", action="store_true",
                       help="no authentication at all: any local user can run commands "
                            "(loopback addresses only)")
    serve.add_argument("--demo", action="store_true",
                       help="also run the demo agent (scripts/demo_agent.py), restarted when it ends")
    serve.add_argument("--log-level", default="info",
                       choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=cmd_serve)

    run = sub.add_parser(
        "run", parents=[connection, output], help="start an agent and follow it to its end",
        usage=f"{PROG} run NAME [options] -- COMMAND [ARGS...]",
        description="Start an agent on the server, print its output as it comes, and exit "
                    "with its exit code. Ctrl-C asks whether to stop it or detach.")
    run.add_argument("name", metavar="NAME")
    run.add_argument("argv", nargs="*", default=[], metavar="COMMAND",
                     help="the command and its arguments, after --")
    run.add_argument("--profile", "-p", help="a configured profile (codex, npm, shell, ...)")
    run.add_argument("--extract", "-x", action="append", default=[], metavar="NAME=REGEX",
                     help="an extractor: REGEX on each line, value from (?P<value>...) "
                          "or the whole match (repeatable)")
    run.add_argument("--env", "-e", action="append", default=[], metavar="NAME=VALUE",
                     help="an environment variable for the agent (repeatable)")
    run.add_argument("--cwd", help="working directory (default: this one, for a local server)")
    run.add_argument("--cols", type=int, help="terminal width (default: yours, or 120)")
    run.add_argument("--rows", type=int, help="terminal height (default: yours, or 40)")
    run.add_argument("--restart", choices=("never", "on-failure", "always"))
    run.add_argument("--grace", type=float, metavar="S", help="SIGTERM to SIGKILL delay")
    run.add_argument("--on-interrupt", choices=("ask", "stop", "detach"), default="ask",
                     help="what Ctrl-C does (default: ask on a terminal, else stop)")
    run.set_defaults(func=cmd_run)

    tail = sub.add_parser(
        "tail", parents=[connection, output], help="print and follow an agent's output",
        description="Print an agent's last lines, and with --follow its output as it comes, "
                    "until it ends. Reconnects by itself, without gap or duplicate.")
    tail.add_argument("name", nargs="?", metavar="NAME")
    where = tail.add_mutually_exclusive_group()
    where.add_argument("--from-start", action="store_true", help="the whole retained history")
    where.add_argument("--last", "-n", type=int, metavar="N", help="the last N lines (10)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new output")
    tail.add_argument("--all", action="store_true",
                      help="every agent's output, live (never ends by itself)")
    tail.add_argument("--exit-code", action="store_true",
                      help="with --follow: exit with the agent's exit code")
    tail.set_defaults(func=cmd_tail)

    stop = sub.add_parser("stop", parents=[connection], help="stop an agent")
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--grace", type=float, metavar="S", help="SIGTERM to SIGKILL delay")
    stop.add_argument("--no-wait", action="store_true", help="do not wait for it to end")
    stop.set_defaults(func=cmd_stop)

    restart = sub.add_parser("restart", parents=[connection], help="start an agent's next run",
                             description="End the agent's current run (SIGTERM, then SIGKILL after "
                                         "its grace period) if it has one, and start the next.")
    restart.add_argument("name", metavar="NAME")
    restart.add_argument("--no-wait", action="store_true", help="do not wait for the new run")
    restart.set_defaults(func=cmd_restart)

    rm = sub.add_parser("rm", aliases=["delete"], parents=[connection], help="delete an agent and its history",
                        description="Delete an agent's definition and its whole history.")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("-f", "--force", action="store_true", help="stop it first if it is running")
    rm.add_argument("--grace", type=float, metavar="S", help="with --force: SIGTERM to SIGKILL delay")
    rm.set_defaults(func=cmd_rm)

    send = sub.add_parser("send", parents=[connection], help="type text into an agent",
                          description="Type TEXT into the agent's terminal, then Enter.")
    send.add_argument("name", metavar="NAME")
    send.add_argument("text", nargs="+", metavar="TEXT")
    send.add_argument("-n", "--no-newline", action="store_true", help="do not press Enter")
    send.set_defaults(func=cmd_send)

    lister = sub.add_parser("list", aliases=["ls"], parents=[connection], help="list agents")
    lister.add_argument("--json", action="store_true", help="the API's JSON")
    lister.set_defaults(func=cmd_list)

    token = sub.add_parser("token", parents=[connection], help="print the server's token",
                           description="Print the token of the server (flags, then "
                                       f"${TOKEN_ENV}, then the data dir's {runtime.RUNTIME_FILE}),"
                                       " for curl: -H \"Authorization: Bearer $(agent-supervisor token)\"")
    token.add_argument("--link", action="store_true",
                       help="print the dashboard's address with the token instead")
    token.set_defaults(func=cmd_token)

    stats = sub.add_parser("stats", parents=[connection], help="stream statistics")
    stats.add_argument("--json", action="store_true", help="the API's JSON")
    stats.set_defaults(func=cmd_stats)
    return parser


def _split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Cut ``run``'s command (everything after its first ``--``) off the command line, so
    that the agent's own options never reach argparse (``run x -- ls -la``)."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in ("--url", "--token", "--data-dir"):
            index += 2
        elif token.startswith("-"):
            index += 1
        else:
            break
    if index >= len(argv) or argv[index] != "run" or "--" not in argv[index:]:
        return argv, None
    cut = argv.index("--", index)
    return argv[:cut], argv[cut + 1:]


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (argparse's own exits are caught)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, after_dashes = _split_command(argv)
    try:
        args = parser.parse_args(argv)
        if after_dashes is not None:
            if args.cmd != "run":
                parser.parse_args(argv + ["--", *after_dashes])  # reports what is wrong
            args.after_dashes = after_dashes
    except SystemExit as exc:  # --help, or a bad command line (already reported)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        _error(f"{PROG} {args.cmd}: error: {exc}")
        return EXIT_USAGE
    except ApiError as exc:  # ServerUnreachable (no server) included
        connection = getattr(args, "connection", None)
        where = connection.describe() if isinstance(exc, ServerUnreachable) and connection else ""
        _error(f"{PROG}: {exc}" + (f" ({where})" if where else ""))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing, and keep Python from complaining
        # about the unflushed stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except _server_errors() as exc:
        _error(f"{PROG}: {exc}")
        return EXIT_USAGE


def _error(line: str) -> None:
    """One line on stderr; on a terminal, over any progress line that was left there."""
    sys.stderr.write((_ERASE_LINE if _is_tty(sys.stderr) else "") + line + "\n")
    sys.stderr.flush()


def _server_errors() -> tuple[type[BaseException], ...]:
    """The core's expected errors (a bad config, a taken port), without importing the core
    for client commands."""
    if "supervisor.exceptions" in sys.modules:
        from .exceptions import SupervisorError

        return (SupervisorError,)
    return ()
