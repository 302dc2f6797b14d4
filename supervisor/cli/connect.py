"""Which server a command talks to, and with which token: flags, then the environment, then the
data dir's runtime file (see :mod:`supervisor.runtime`)."""
from __future__ import annotations

import argparse

from .. import runtime
from ..client import Client


def connection_for(args: argparse.Namespace) -> runtime.Connection:
    """The server and token for the parsed arguments; kept on ``args`` for the error message
    when the server cannot be reached."""
    connection = runtime.resolve(getattr(args, "url", None), getattr(args, "token", None),
                                 getattr(args, "data_dir", None))
    args.connection = connection
    return connection


def client_for(args: argparse.Namespace) -> Client:
    """A client of :func:`connection_for`'s server that picks up a new token after a 401 (a
    restarted server may have generated another)."""
    connection = connection_for(args)

    def renew() -> str | None:
        # The runtime file again: a server restarted meanwhile may have a new generated token.
        fresh = runtime.resolve(getattr(args, "url", None), getattr(args, "token", None),
                                getattr(args, "data_dir", None))
        return fresh.token if fresh.url == connection.url else None

    return Client(connection.url, connection.token, renew=renew)
