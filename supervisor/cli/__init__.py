"""The ``agent-supervisor`` command: ``serve``, and a client for a running server.

- :mod:`~supervisor.cli.parser`: the command line's grammar;
- :mod:`~supervisor.cli.commands`: one plain function per command, of a
  :class:`~supervisor.client.Client` and the parsed arguments;
- :mod:`~supervisor.cli.connect`: which server and token (flags, environment, runtime file);
- :mod:`~supervisor.cli.follow`: history and streams followed across reconnections;
- :mod:`~supervisor.cli.render`: what the user sees (lines, notes, progress, tables);
- :mod:`~supervisor.cli.screen`: an agent's virtual screen, printed or followed;
- :mod:`~supervisor.cli.conventions`: exit statuses and the usage error;
- :mod:`~supervisor.cli.keys`: one key from the terminal, and signals that detach;
- :mod:`~supervisor.cli.completion`: the bash and zsh completion scripts.

Every client command talks HTTP through :mod:`supervisor.client` (stdlib only, blocking).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ..client import ApiError, Client, ServerUnreachable
from .connect import client_for
from .conventions import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    Detached,
    UsageError,
)
from .parser import WITH_COMMAND, build_parser, split_command
from .render import ERASE_LINE, is_tty

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (argparse's own exits are caught)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, after_dashes = split_command(argv)
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            if args.cmd in WITH_COMMAND:
                # `run x ls -la`: the agent's own options reached us. Say where they go.
                suggested = " ".join([*args.argv, *extras])
                _error(f"{PROG} {args.cmd}: error: unrecognized arguments: {' '.join(extras)}; put the agent's"
                       f" command after --: {PROG} {args.cmd} {args.name} [options] -- {suggested}")
                return EXIT_USAGE
            parser.parse_args(argv)  # reports what is wrong
        if after_dashes is not None:
            if args.cmd not in WITH_COMMAND:
                parser.parse_args(argv + ["--", *after_dashes])  # reports what is wrong
            args.after_dashes = after_dashes
    except SystemExit as exc:  # --help, --version, or a bad command line (already reported)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if not args.client:  # serve, token, completion
            local: Callable[[argparse.Namespace], int] = args.func
            return local(args)
        command: Callable[[Client, argparse.Namespace], int] = args.func
        return command(client_for(args), args)
    except UsageError as exc:
        _error(f"{PROG} {args.cmd}: error: {exc}")
        return EXIT_USAGE
    except ApiError as exc:  # ServerUnreachable (no server) included
        connection = getattr(args, "connection", None)
        stale = connection is not None and connection.stale is not None
        where = connection.describe() if connection and (isinstance(exc, ServerUnreachable) or stale) else ""
        _error(f"{PROG}: {exc}" + (f" ({where})" if where else ""))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except Detached as exc:  # SIGHUP or SIGTERM outside a command that handles it
        return 128 + exc.signum
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
    sys.stderr.write((ERASE_LINE if is_tty(sys.stderr) else "") + line + "\n")
    sys.stderr.flush()


def _server_errors() -> tuple[type[BaseException], ...]:
    """The core's expected errors (a bad config, a taken port), without importing the core
    for client commands."""
    if "supervisor.exceptions" in sys.modules:
        from ..exceptions import SupervisorError

        return (SupervisorError,)
    return ()
