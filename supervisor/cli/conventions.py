"""What every command shares: the program's name, its environment variables, its exit statuses.

An expected failure (server down, unknown agent, bad pattern, bad flag) is one line on stderr
and a non-zero status, never a traceback: 1 for a failure the server reported or could not be
reached for, 2 for a bad command line, 130 after Ctrl-C.
"""
from __future__ import annotations

from ..runtime import TOKEN_ENV, URL_ENV

__all__ = ["Detached", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_USAGE", "PROG", "TOKEN_ENV",
           "URL_ENV", "UsageError"]

PROG = "agent-supervisor"

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: ``run`` of a command the server cannot find exits like a shell does.
EXIT_NOT_FOUND = 127


class UsageError(Exception):
    """A command line that cannot be right whatever the server says; exits with status 2."""


class Detached(BaseException):
    """SIGHUP or SIGTERM reached a command that follows an agent: it lets go of the agent (which
    keeps running on the server) and exits with 128 + the signal, as a shell reports it. A
    BaseException, like KeyboardInterrupt: no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
