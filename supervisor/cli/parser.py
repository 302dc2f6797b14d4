"""The command line's grammar: argparse, with one-line errors, and ``run``'s ``--`` cut off first."""
from __future__ import annotations

import argparse
from typing import NoReturn

from .. import __version__, runtime
from ..client import DEFAULT_URL
from . import commands
from . import screen as screen_command
from .conventions import EXIT_USAGE, PROG, TOKEN_ENV, URL_ENV


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (not usage + error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Every command and its options; ``func`` of the parsed arguments is the command."""
    # --url/--token are accepted before or after the command: SUPPRESS keeps a value given
    # before the command from being reset by the sub-parser's default.
    connection = _Parser(add_help=False)
    connection.add_argument("--url", default=argparse.SUPPRESS, metavar="URL",
                            help=f"server URL (default ${URL_ENV}, else the data dir's "
                                 f"{runtime.RUNTIME_FILE}, else {DEFAULT_URL})")
    connection.add_argument("--token", default=argparse.SUPPRESS,
                            help=f"API token (default ${TOKEN_ENV}, else the data dir's "
                                 f"{runtime.RUNTIME_FILE} when it names the same URL); other "
                                 f"users can see a --token in `ps`, ${TOKEN_ENV} they cannot")
    connection.add_argument("--data-dir", default=argparse.SUPPRESS, metavar="DIR",
                            help="the data dir of the server to find (default: the configured one)")
    output = _Parser(add_help=False)
    output.add_argument("--json", action="store_true",
                        help="one event per line as JSON (the API's envelope)")
    output.add_argument("--color", "--colour", choices=("auto", "always", "never"),
                        default="auto", help="keep ANSI colours (auto: on a terminal)")
    output.add_argument("-q", "--quiet", action="store_true",
                        help="no notes or extractions on stderr")

    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print the API's JSON instead")

    parser = _Parser(prog=PROG, parents=[connection],
                     description="Run command-line agents under a PTY and stream their output.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.set_defaults(client=True)  # serve, token and completion say otherwise
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
                                       f"{runtime.RUNTIME_FILE}). At least 16 printable ASCII "
                                       "characters. Every user of this machine can read it in "
                                       "`ps` (/proc/PID/cmdline): prefer --token-file, "
                                       f"${TOKEN_ENV} or token in the config file")
    serve.add_argument("--token-file", metavar="FILE",
                       help="require the token on the first line of FILE (keep it mode 0600); "
                            "unlike --token, not visible to other users")
    serve.add_argument("--no-token", action="store_true",
                       help="no authentication at all: any local user can run commands "
                            "(loopback addresses only)")
    serve.add_argument("--redis", metavar="URL", dest="redis_url",
                       help="join a cluster of servers sharing this Redis (redis://HOST:PORT/DB or"
                            " unix:///PATH): every node lists, streams and controls every agent")
    serve.add_argument("--node", metavar="NAME",
                       help="this server's name in the cluster (default: the host name)")
    serve.add_argument("--demo", action="store_true",
                       help="also run the demo agent (python -m supervisor.demo_agent), restarted when it ends")
    serve.add_argument("--log-level", default="info",
                       choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=commands.serve, client=False)

    run = sub.add_parser(
        "run", parents=[connection, output], help="start an agent and follow it to its end",
        usage=f"{PROG} run NAME [options] -- COMMAND [ARGS...]",
        description="Start an agent on the server, print its output as it comes, and exit "
                    "with its exit code. Ctrl-C asks whether to stop it or detach.")
    _agent_options(run)
    run.add_argument("--on-interrupt", choices=("ask", "stop", "detach"), default="ask",
                     help="what Ctrl-C does (default: ask on a terminal, else stop)")
    run.set_defaults(func=commands.run)

    start = sub.add_parser(
        "start", parents=[connection, as_json], help="start an agent and return (detached)",
        usage=f"{PROG} start NAME [options] -- COMMAND [ARGS...]",
        description="Start an agent on the server and return once it runs (or could not start); "
                    f"follow it later with `{PROG} tail NAME -f`.")
    _agent_options(start)
    start.add_argument("--no-wait", action="store_true", help="return once the server took it")
    start.set_defaults(func=commands.start)

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
    tail.set_defaults(func=commands.tail)

    screen = sub.add_parser(
        "screen", parents=[connection], help="print an agent's virtual screen, or follow it",
        description="Print the agent's virtual screen as it is now (a full-screen program's "
                    "screen, as a terminal shows it). With --follow, redraw it live in this "
                    "terminal until Ctrl-C.")
    screen.add_argument("name", metavar="NAME")
    screen.add_argument("--follow", "-f", action="store_true", help="keep redrawing it as it changes")
    screen.add_argument("--color", "--colour", choices=("auto", "always", "never"), default="auto",
                        help="keep the screen's colours (auto: on a terminal)")
    screen.set_defaults(func=screen_command.screen)

    stop = sub.add_parser("stop", parents=[connection, as_json], help="stop an agent")
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--grace", type=float, metavar="S", help="SIGTERM to SIGKILL delay")
    stop.add_argument("--no-wait", action="store_true", help="do not wait for it to end")
    stop.set_defaults(func=commands.stop)

    restart = sub.add_parser("restart", parents=[connection, as_json], help="start an agent's next run",
                             description="End the agent's current run (SIGTERM, then SIGKILL after "
                                         "its grace period) if it has one, and start the next.")
    restart.add_argument("name", metavar="NAME")
    restart.add_argument("--no-wait", action="store_true", help="do not wait for the new run")
    restart.set_defaults(func=commands.restart)

    rm = sub.add_parser("rm", aliases=["delete"], parents=[connection, as_json], help="delete an agent and its history",
                        description="Delete an agent's definition and its whole history.")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("-f", "--force", action="store_true", help="stop it first if it is running")
    rm.add_argument("--grace", type=float, metavar="S", help="with --force: SIGTERM to SIGKILL delay")
    rm.set_defaults(func=commands.rm)

    send = sub.add_parser("send", parents=[connection, as_json], help="type text into an agent",
                          description="Type TEXT into the agent's terminal, then Enter.")
    send.add_argument("name", metavar="NAME")
    send.add_argument("text", nargs="+", metavar="TEXT")
    send.add_argument("-n", "--no-newline", action="store_true", help="do not press Enter")
    send.set_defaults(func=commands.send)

    lister = sub.add_parser("list", aliases=["ls"], parents=[connection, as_json], help="list agents")
    lister.add_argument("--names", action="store_true", help="only the names, one per line")
    lister.set_defaults(func=commands.list_agents)

    token = sub.add_parser("token", parents=[connection, as_json], help="print the server's token",
                           description="Print the token of the server (flags, then "
                                       f"${TOKEN_ENV}, then the data dir's {runtime.RUNTIME_FILE}),"
                                       " for curl: -H \"Authorization: Bearer $(agent-supervisor token)\"")
    token.add_argument("--link", action="store_true",
                       help="print the dashboard's address with the token instead")
    token.set_defaults(func=commands.token, client=False)

    stats = sub.add_parser("stats", parents=[connection, as_json], help="stream statistics")
    stats.set_defaults(func=commands.stats)

    resize = sub.add_parser("resize", parents=[connection, as_json], help="resize an agent's terminal",
                            description="Change the terminal size of the agent's run (and of its next runs).")
    resize.add_argument("name", metavar="NAME")
    resize.add_argument("cols", type=int, metavar="COLS")
    resize.add_argument("rows", type=int, metavar="ROWS")
    resize.set_defaults(func=commands.resize)

    reload = sub.add_parser(
        "reload", parents=[connection, as_json], help="reread the config file's agents",
        description="Have the server read its config file again and apply its [agents.NAME] tables "
                    "like `supervisorctl update`: new ones start, removed ones stop and go, changed "
                    "ones restart, the others (and agents made over the API) are left alone. A file "
                    "that does not check changes nothing, and the error says why.")
    reload.set_defaults(func=commands.reload)

    completion = sub.add_parser(
        "completion", help="print the shell completion script",
        description=f"Print the completion script for bash or zsh: `source <({PROG} completion bash)` "
                    f"in ~/.bashrc, `source <({PROG} completion zsh)` in ~/.zshrc. Agent names are "
                    "completed from the running server.")
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(func=commands.completion, client=False)
    return parser


def _agent_options(command: argparse.ArgumentParser) -> None:
    """What defines an agent on the command line (``run`` and ``start``)."""
    command.add_argument("name", metavar="NAME")
    command.add_argument("argv", nargs="*", default=[], metavar="COMMAND",
                         help="the command and its arguments, after --")
    command.add_argument("--profile", "-p", help="a configured profile (codex, npm, shell, ...)")
    command.add_argument("--extract", "-x", action="append", default=[], metavar="NAME=REGEX",
                         help="an extractor: REGEX on each line, value from (?P<value>...) "
                              "or the whole match (repeatable)")
    command.add_argument("--env", "-e", action="append", default=[], metavar="NAME=VALUE",
                         help="an environment variable for the agent (repeatable)")
    command.add_argument("--cwd", help="working directory (default: this one, for a local server)")
    command.add_argument("--cols", type=int, help="terminal width (default: yours, or 120)")
    command.add_argument("--rows", type=int, help="terminal height (default: yours, or 40)")
    command.add_argument("--restart", choices=("never", "on-failure", "always"))
    command.add_argument("--grace", type=float, metavar="S", help="SIGTERM to SIGKILL delay")


def _version() -> str:
    """The installed distribution's version, else the package's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agent-supervisor")
    except PackageNotFoundError:
        return __version__


#: Commands whose agent command comes after ``--``.
WITH_COMMAND = ("run", "start")


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Cut the command of ``run`` and ``start`` (everything after its first ``--``) off the
    command line, so that the agent's own options never reach argparse (``run x -- ls -la``)."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in ("--url", "--token", "--data-dir"):
            index += 2
        elif token.startswith("-"):
            index += 1
        else:
            break
    if index >= len(argv) or argv[index] not in WITH_COMMAND or "--" not in argv[index:]:
        return argv, None
    cut = argv.index("--", index)
    return argv[:cut], argv[cut + 1:]

