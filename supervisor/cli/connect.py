"""Which server a command talks to, and with which token: flags, then the environment, then the
data dir's runtime file (see :mod:`supervisor.runtime`)."""
from __future__ import annotations

import argparse

from .. import runtime
from ..client import Client, ServerUnreachable


def _resolve(args: argparse.Namespace) -> runtime.Connection:
    return runtime.resolve(getattr(args, "url", None), getattr(args, "token", None), getattr(args, "data_dir", None))


def connection_for(args: argparse.Namespace) -> runtime.Connection:
    """The server and token for the parsed arguments; kept on ``args`` for the error message
    when the server cannot be reached. A data dir whose server died is
    :class:`~supervisor.client.ServerUnreachable` at once: nothing is sent anywhere."""
    try:
        connection = _resolve(args)
    except runtime.ServerNotRunning as exc:
        raise ServerUnreachable(str(exc)) from None
    args.connection = connection
    return connection


def client_for(args: argparse.Namespace) -> Client:
    """A client of :func:`connection_for`'s server that picks up a new token after a 401 (a
    restarted server may have generated another)."""
    connection = connection_for(args)

    def renew() -> str | None:
        # The runtime file again: a server restarted meanwhile may have a new generated token.
        try:
            fresh = _resolve(args)
        except runtime.ServerNotRunning:
            return None  # not written yet by the restarted server: the next 401 asks again
        return fresh.token if fresh.url == connection.url else None

    return Client(connection.url, connection.token, renew=renew)
