"""The commands: plain functions of a client and the parsed arguments, returning the exit status.

``serve`` and ``token`` take no client. ``serve`` runs the server in this process, and it is the
one place that imports the server (Flask, gevent), inside the function, so that the client
commands start fast and work where the server's dependencies are not installed.
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
from collections.abc import Iterable
from typing import Any

from .. import runtime
from ..client import ApiError, Client, Follower, StreamTimeout
from ..states import ACTIVE_STATES, SETTLED_STATES, AgentState
from . import follow, keys
from .connect import connection_for
from .conventions import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    PROG,
    TOKEN_ENV,
    Detached,
    UsageError,
)
from .follow import agent_or_none, agent_path
from .render import (
    RED,
    RUNNING,
    YELLOW,
    Renderer,
    Status,
    byte_size,
    colour_wanted,
    describe_end,
    duration,
    exit_code,
    is_tty,
    table,
    uptime_or_exit,
    usage_cells,
)

#: Agent states as the API writes them.
ACTIVE = frozenset(state.value for state in ACTIVE_STATES)
SETTLED = frozenset(state.value for state in SETTLED_STATES)
#: How long ``stop`` waits for the end beyond the grace period before it reports a problem.
STOP_MARGIN_S = 20.0

def is_loopback(client: Client) -> bool:
    from ..config import (
        is_loopback,  # the client side stays light: config loads on demand
    )

    return is_loopback(client.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0])


def pairs(items: Iterable[str], what: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` arguments; a missing ``=`` or name is a usage error."""
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{what} must look like NAME=VALUE, got {item!r}")
        pairs.append((name, value))
    return pairs



def serve(args: argparse.Namespace) -> int:
    """Run the server in this process until SIGINT/SIGTERM."""
    import logging

    from ..config import Config, load_config
    from ..datadir import private_umask
    from ..process import set_agent_umask

    # Before anything is created: the data dir, history, records, server.json are the user's
    # alone. Agents get the user's own umask back.
    set_agent_umask(private_umask())

    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if sum(bool(given) for given in (args.token, args.token_file, args.no_token)) > 1:
        raise UsageError("give one of --token, --token-file and --no-token")
    token = runtime.read_token_file(args.token_file) if args.token_file else args.token

    def load() -> Config:
        # The file and the flags, again for each reload (SIGHUP, `agent-supervisor reload`).
        return load_config(args.config, host=args.host, port=args.port, data_dir=args.data_dir,
                           token=token, no_token=True if args.no_token else None,
                           redis_url=args.redis_url, node=args.node)

    config, generated = runtime.with_token(load())
    from api.server import run_server  # the server's dependencies load only for `serve`

    def ready(url: str, network_url: str) -> None:
        print(f"{PROG}: serving on {url}", flush=True)
        if network_url != url:  # a wildcard bind: the link must work from other machines too
            print(f"{PROG}: other machines reach it at {network_url} (plain HTTP)", flush=True)
            url = network_url
        # The token is printed this once, for a person to click; it is never logged.
        if generated:
            print(f"{PROG}: open the dashboard at {runtime.dashboard_url(url, config.token)}\n"
                  f"{PROG}: on this machine `{PROG} list` and friends find the server and its token"
                  f" in {runtime.runtime_path(config.data_dir)}; `{PROG} token` prints it",
                  flush=True)
        else:
            how = " with the token you configured" if config.token else ""
            print(f"{PROG}: open the dashboard at {url}/{how}", flush=True)

    run_server(config, ready=ready, demo=args.demo, load=load)
    return EXIT_OK


def token(args: argparse.Namespace) -> int:
    """Print the token of the server (for curl), or with --link the dashboard's address."""
    connection = connection_for(args)  # a data dir whose server died: "not running"
    if connection.token is None:
        if connection.stale is not None and runtime.same_origin(connection.url, connection.stale.url):
            raise ApiError(str(runtime.ServerNotRunning(connection.stale)))
        if connection.runtime is not None and connection.runtime.token is None:
            raise ApiError(f"the server at {connection.url} runs without a token (--no-token)")
        data_dir = getattr(args, "data_dir", None)
        where = f"{data_dir}/{runtime.RUNTIME_FILE}" if data_dir else f"the data dir's {runtime.RUNTIME_FILE}"
        raise ApiError(f"no token for {connection.url}: not in --token, ${TOKEN_ENV} or {where}"
                       f" (is `{PROG} serve` running{' with that data dir' if data_dir else ''}?)")
    if args.json:
        emit_json({"url": connection.url, "token": connection.token,
                   "link": runtime.dashboard_url(connection.url, connection.token)})
    else:
        print(runtime.dashboard_url(connection.url, connection.token) if args.link else connection.token)
    return EXIT_OK


def emit_json(value: Any) -> None:
    """``--json``: the answer on stdout, indented, and nothing else there."""
    print(json.dumps(value, indent=2))


def completion(args: argparse.Namespace) -> int:
    """Print the completion script of ``args.shell`` for this command line."""
    from .completion import script
    from .parser import build_parser

    sys.stdout.write(script(build_parser(), args.shell))
    return EXIT_OK


def agent_spec(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """The agent definition of ``run`` and ``start``'s options and command."""
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
                              for name, pattern in pairs(args.extract, "--extract")]
    if args.env:
        spec["env"] = dict(pairs(args.env, "--env"))
    cwd = args.cwd if args.cwd is not None else (os.getcwd() if is_loopback(client) else None)
    if cwd:
        spec["cwd"] = os.path.abspath(cwd) if is_loopback(client) else cwd
    size = shutil.get_terminal_size((120, 40)) if is_tty(sys.stdout) else None
    spec["cols"] = args.cols or (size.columns if size else 120)
    spec["rows"] = args.rows or (size.lines if size else 40)
    if args.restart:
        spec["restart"] = args.restart
    if args.grace is not None:
        spec["stop_grace_s"] = args.grace
    return spec


def start(client: Client, args: argparse.Namespace) -> int:
    """Start an agent and return once it runs (or could not start): ``run`` without following."""
    status = Status(sys.stderr)
    spec = agent_spec(client, args)
    status.show(f"connecting to {client.url}...")
    try:
        created = client.create(spec)
    except ApiError as exc:
        status.clear()
        if exc.code == "executable_not_found":
            status.note(str(exc), RED)
            return EXIT_NOT_FOUND
        raise
    agent = created if args.no_wait else _settled(client, args.name, created, status)
    status.clear()
    if args.json:
        emit_json(agent)
    elif agent.get("state") == AgentState.FAILED:
        status.note(f"{args.name}: could not start: {agent.get('reason', '')}", RED)
    else:
        pid = f", pid {agent['pid']}" if agent.get("pid") else ""
        print(f"{args.name}: {agent.get('state')}, run {agent.get('run')}{pid}"
              f" (follow it with: {PROG} tail {args.name} -f)")
    return EXIT_FAILURE if agent.get("state") == AgentState.FAILED else EXIT_OK


def _settled(client: Client, name: str, created: dict[str, Any], status: Status) -> dict[str, Any]:
    """The agent once its new run got as far as it goes by itself (runs, ended, failed)."""
    status.show(f"starting {name}...")
    deadline = time.monotonic() + STOP_MARGIN_S
    agent = created
    while agent.get("state") not in SETTLED and time.monotonic() < deadline:
        time.sleep(0.05)
        agent = client.agent(name)
    return agent


def run(client: Client, args: argparse.Namespace) -> int:
    """Start an agent and follow it to its end; exit with its exit code."""
    status = Status(sys.stderr)
    spec = agent_spec(client, args)

    status.show(f"connecting to {client.url}...")
    previous = agent_or_none(client, args.name)
    # Follow from the previous run's last event, so a re-used name shows only the new run.
    start_after = str(previous["last_event_id"]) if previous and previous.get("last_event_id") else None
    try:
        client.create(spec)
    except ApiError as exc:
        status.clear()
        if exc.code == "executable_not_found":
            status.note(str(exc), RED)
            return EXIT_NOT_FOUND
        raise
    status.clear()
    renderer = Renderer(sys.stdout, status, colour=colour_wanted(args.color, sys.stdout),
                        json_mode=args.json, quiet=args.quiet)
    followed = follow.follower(client, agent_path(args.name), start_after, status)
    return _follow_run(client, args, followed, renderer, status)


def _follow_run(client: Client, args: argparse.Namespace, follower: Follower,
                renderer: Renderer, status: Status) -> int:
    """Print the run until it completes; Ctrl-C asks (once) whether to stop it or detach;
    SIGHUP and SIGTERM detach."""
    try:
        with keys.detach_on_signals():
            return _follow_until_end(client, args, follower, renderer, status)
    except Detached as exc:
        try:
            renderer.finish()
            status.note(f"{signal.Signals(exc.signum).name}: detached; {args.name} keeps running. Follow it"
                        f" again with: {PROG} tail {args.name} --follow")
        except OSError:
            pass  # the terminal is gone with the SIGHUP
        return 128 + exc.signum


def _follow_until_end(client: Client, args: argparse.Namespace, follower: Follower,
                      renderer: Renderer, status: Status) -> int:
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
            status.note(f"{args.name} {describe_end(agent)}")
        return exit_code(agent)
    return exit_code(renderer.complete)


def _ask_on_interrupt(args: argparse.Namespace) -> str:
    """``stop`` or ``detach``: from ``--on-interrupt``, else one key pressed on the terminal."""
    if args.on_interrupt != "ask":
        return str(args.on_interrupt)
    if not (is_tty(sys.stdin) and is_tty(sys.stderr)):
        return "stop"
    sys.stderr.write(f"\n{PROG}: stop agent {args.name!r} [s], or detach and leave it running [d]? ")
    sys.stderr.flush()
    try:
        decided = keys.answer(sys.stdin.fileno())
    except KeyboardInterrupt:
        decided = "stop"  # a second Ctrl-C at the question: the user wants it to end
    sys.stderr.write(f"{(decided or 'stop')[0]}\n")
    sys.stderr.flush()
    return decided or "stop"


def tail(client: Client, args: argparse.Namespace) -> int:
    """Print an agent's output (or every agent's with --all), and follow it with --follow."""
    status = Status(sys.stderr)
    colour = colour_wanted(args.color, sys.stdout)
    if args.all:
        if args.name:
            raise UsageError("give an agent name or --all, not both")
        if args.last is not None:
            raise UsageError("--last needs an agent name; with --all use --from-start or nothing")
        renderer = Renderer(sys.stdout, status, colour=colour, json_mode=args.json,
                            show_names=True, quiet=args.quiet, announce_runs=True)
        status.show(f"connecting to {client.url}...")
        newest = max([int(agent.get("last_event_id") or 0) for agent in client.agents()] or [0])
        start = None if args.from_start or not newest else str(newest)
        everything = follow.follower(client, "/api/stream", start, status, stop_at_complete=False,
                                     give_up_s=None)
        follow.print_stream(everything, renderer, replay_until=newest if args.from_start else 0)
        return EXIT_OK
    if not args.name:
        raise UsageError("give an agent name, or --all")
    renderer = Renderer(sys.stdout, status, colour=colour, json_mode=args.json,
                        quiet=args.quiet, announce_runs=True)
    status.show(f"connecting to {client.url}...")
    events, last_id = follow.history(client, args.name, status)
    if not args.from_start:
        events = follow.last_lines(events, 10 if args.last is None else args.last)
    for envelope in events:
        renderer.envelope(envelope)
    if args.follow and (renderer.complete is None or _later_run_exists(client, args.name, last_id)):
        followed = follow.follower(client, agent_path(args.name), str(last_id) if last_id else None,
                                   status, give_up_s=None)
        follow.print_stream(followed, renderer)
    renderer.finish()
    if args.follow and renderer.complete is not None:
        return exit_code(renderer.complete) if args.exit_code else EXIT_OK
    return EXIT_OK


def _later_run_exists(client: Client, name: str, last_id: int) -> bool:
    """A ``complete`` was printed from history; is there more (a new run) after it?"""
    agent = client.agent(name)
    return int(agent.get("last_event_id") or 0) > last_id


def stop(client: Client, args: argparse.Namespace) -> int:
    """Stop an agent (SIGTERM, then SIGKILL after its grace period) and wait until it ended."""
    status = Status(sys.stderr)
    before = client.agent(args.name)
    if before.get("state") not in ACTIVE:
        if before.get("state") == AgentState.LOST or (before.get("usage") or {}).get("processes"):
            return _stop_remains(client, args, before)
        if args.json:
            emit_json(before)
        else:
            status.note(f"{args.name} is not running ({describe_end(before)})")
        return EXIT_OK
    if args.no_wait:
        after = client.stop(args.name, args.grace)
        if args.json:
            emit_json(after)
        else:
            status.note(f"stopping {args.name}")
        return EXIT_OK
    final = stop_and_wait(client, args.name, args.grace, status)
    if args.json:
        emit_json(client.agent(args.name))
    else:
        print(f"{args.name}: {describe_end(final)}")
    return EXIT_OK


def _stop_remains(client: Client, args: argparse.Namespace, before: dict[str, Any]) -> int:
    """Stop an agent with no live run: the server ends what its last run left running (kept
    leftovers, or what a crashed server left of a lost run); wait until none is left."""
    client.stop(args.name, args.grace)
    now = before
    if not args.no_wait:
        deadline = time.monotonic() + (args.grace or 10.0) + STOP_MARGIN_S
        while time.monotonic() < deadline:
            now = client.agent(args.name)
            if not now.get("usage") and int(now.get("ended") or 0) >= int(before.get("ended") or 0):
                break
            time.sleep(0.1)
    ended = int(now.get("ended") or 0) - int(before.get("ended") or 0)
    if args.json:
        emit_json(now)
    else:
        print(f"{args.name}: {now.get('state')}; ended {max(0, ended)} processes its last run left")
    return EXIT_OK


def stop_and_wait(client: Client, name: str, grace: float | None, status: Status) -> dict[str, Any]:
    """Ask the server to stop ``name`` and follow its stream to the end; returns how it ended
    (its ``complete`` data, or the agent). Raises :class:`ApiError` if it is still active well
    after its grace period."""
    started = time.monotonic()
    after = client.stop(name, grace)
    status.show(f"stopping {name}...")
    renderer = Renderer(io.StringIO(), status, colour=False, quiet=True)  # only its end counts
    followed = follow.follower(client, agent_path(name), str(after.get("last_event_id") or "") or None, status)
    # The server escalates to SIGKILL after the grace period, so the end cannot take long.
    followed.deadline = time.monotonic() + (grace or 10.0) + STOP_MARGIN_S
    try:
        for event in followed:
            renderer.wire(event)
    except StreamTimeout:
        pass  # asked below: the state says whether it ended
    finally:
        status.clear()
    final = renderer.complete or client.agent(name)
    if renderer.complete is None and final.get("state") in ACTIVE:
        raise ApiError(f"{name} is still {final.get('state')} "
                       f"{time.monotonic() - started:.0f}s after it was asked to stop")
    return final


def restart(client: Client, args: argparse.Namespace) -> int:
    """End the agent's current run, if any, and start the next; wait until it runs (or fails)."""
    status = Status(sys.stderr)
    before = client.agent(args.name)
    after = client.restart(args.name)
    if args.no_wait:
        if args.json:
            emit_json(after)
        else:
            status.note(f"restarting {args.name}")
        return EXIT_OK
    status.show(f"restarting {args.name}...")
    followed = follow.follower(client, agent_path(args.name), str(after.get("last_event_id") or "") or None,
                               status, stop_at_complete=False)
    # The old run gets its grace period, then SIGKILL; the new one must then at least start.
    followed.deadline = time.monotonic() + 10.0 + STOP_MARGIN_S
    old_run = before.get("run") or 0
    try:
        for event in followed:
            if event.event == "state":
                data = event.json().get("data", {})
                if (data.get("run") or 0) > old_run and data.get("state") in SETTLED:
                    break
    except StreamTimeout:
        pass  # asked below
    finally:
        status.clear()
    now = client.agent(args.name)
    if (now.get("run") or 0) <= old_run:
        raise ApiError(f"{args.name} did not start again (it is {now.get('state')})")
    if now.get("state") == AgentState.FAILED:
        raise ApiError(f"{args.name}: {describe_end(now)}")
    if args.json:
        emit_json(now)
    else:
        print(f"{args.name}: {now.get('state')}, run {now.get('run')}"
              + (f", pid {now['pid']}" if now.get("pid") else ""))
    return EXIT_OK


def rm(client: Client, args: argparse.Namespace) -> int:
    """Delete an agent and its history; a running one only with --force, which stops it first."""
    agent = client.agent(args.name)
    if agent.get("state") in ACTIVE:
        if not args.force:
            raise UsageError(f"{args.name} is {agent.get('state')}: stop it first, or use --force")
        final = stop_and_wait(client, args.name, args.grace, Status(sys.stderr))
        if not args.json:
            print(f"{args.name}: {describe_end(final)}")
    client.delete(args.name)
    if args.json:
        emit_json({"name": args.name, "deleted": True})
    else:
        print(f"{args.name}: deleted, with its history")
    return EXIT_OK


def send(client: Client, args: argparse.Namespace) -> int:
    """Type text into an agent's terminal, then Enter (a carriage return) unless -n."""
    text = " ".join(args.text)
    data = text if args.no_newline else text + "\r"
    client.send_input(args.name, data)
    if args.json:
        emit_json({"name": args.name, "sent": data})
    return EXIT_OK


def resize(client: Client, args: argparse.Namespace) -> int:
    """Change the terminal size of an agent's run."""
    client.resize(args.name, args.cols, args.rows)
    if args.json:
        emit_json(client.agent(args.name))
    else:
        print(f"{args.name}: {args.cols}x{args.rows}")
    return EXIT_OK


def reload(client: Client, args: argparse.Namespace) -> int:
    """Have the server reread its config file's agents; print what changed, like
    ``supervisorctl update``. A file that does not check is an error (exit 1) saying why."""
    result = client.reload()
    if args.json:
        emit_json(result)
        return EXIT_OK
    for key, word in (("removed", "removed"), ("changed", "changed"), ("added", "added")):
        for name in result.get(key) or []:
            print(f"{name}: {word}")
    if not any(result.get(key) for key in ("removed", "changed", "added")):
        print(f"no changes ({len(result.get('unchanged') or [])} agents of the config file as they were)")
    if result.get("restart_needed"):
        Status(sys.stderr).note("these settings change only with a restart of the server: "
                                + ", ".join(result["restart_needed"]), YELLOW)
    return EXIT_OK


def list_agents(client: Client, args: argparse.Namespace) -> int:
    """Every agent as a table (name, state, pid, uptime or exit code, lines, clients, and what
    its processes cost: CPU, memory, processes)."""
    agents = client.agents()
    if args.json:
        emit_json({"agents": agents})
        return EXIT_OK
    if args.names:
        for agent in agents:
            print(agent.get("name"))
        return EXIT_OK
    if not agents:
        print("no agents", file=sys.stderr)
        return EXIT_OK
    # In a cluster (serve --redis) every agent has its node: a column for it, after the name.
    clustered = any("node" in agent for agent in agents)
    node: tuple[str, ...] = ("NODE",) if clustered else ()
    rows = [("NAME", *node, "STATE", "FROM", "PID", "UPTIME/EXIT", "RESTARTS", "LINES", "CLIENTS", "CPU", "MEM",
             "PROCS")]
    for agent in sorted(agents, key=lambda a: str(a.get("name"))):
        running = agent.get("state") in RUNNING
        state = str(agent.get("state"))
        if agent.get("waiting_input"):
            state += ", waiting for input"
        rows.append((
            str(agent.get("name")), *((str(agent.get("node") or "-"),) if clustered else ()),
            state, str(agent.get("origin", "api")),
            str(agent.get("pid")) if running and agent.get("pid") else "-",
            uptime_or_exit(agent), str(max(0, int(agent.get("run") or 0) - 1)),
            str(agent.get("lines", 0)), str(agent.get("clients", 0)),
            *usage_cells(agent.get("usage")),
        ))
    shift = len(node)
    print(table(rows, right=tuple(column + shift for column in (3, 5, 6, 7, 8, 9, 10))))
    waiting = [a for a in agents if a.get("waiting_input")]
    for agent in waiting:
        Status(sys.stderr).note(f"{agent.get('name')} waits for input: {agent.get('prompt')!r}"
                                f" (answer with: {PROG} send {agent.get('name')} TEXT)", YELLOW)
    return EXIT_OK




def stats(client: Client, args: argparse.Namespace) -> int:
    """The server's stream statistics as tables, or raw with --json."""
    stats = client.stats()
    if args.json:
        emit_json(stats)
        return EXIT_OK
    summary = [
        ("uptime", duration(float(stats.get("uptime_s", 0)))),
        ("agents", f"{stats.get('total_agents', 0)}"),
        ("clients", (f"{stats.get('total_clients', 0)} "
                     f"({stats.get('all_stream_clients', 0)} on /api/stream)")),
        ("clients connected since start", f"{stats.get('clients_connected_total', 0):,}"),
        ("clients dropped (slow)", f"{stats.get('clients_dropped_slow', 0):,}"),
        ("events published", f"{stats.get('events_published', 0):,}"),
        ("events delivered", f"{stats.get('events_delivered', 0):,}"),
        ("bytes delivered", byte_size(float(stats.get("bytes_delivered", 0)))),
    ]
    print(table(summary))
    per_agent = stats.get("agents") or {}
    if per_agent:
        print()
        rows = [("AGENT", "CLIENTS")] + [(name, str(count)) for name, count in
                                         sorted(per_agent.items())]
        print(table(rows, right=(1,)))
    clients = stats.get("clients") or []
    if clients:
        print()
        rows = [("CLIENT", "AGENT", "FROM", "CONNECTED", "SENT", "QUEUED")]
        for reader in clients:
            rows.append((
                str(reader.get("id")), str(reader.get("agent") or "(all)"),
                str(reader.get("remote_addr", "-")), str(reader.get("connected_at", "-")),
                f"{reader.get('sent', 0):,}",
                f"{reader.get('queued', 0)} ({byte_size(float(reader.get('queued_bytes', 0)))})",
            ))
        print(table(rows, right=(4,)))
    return EXIT_OK


