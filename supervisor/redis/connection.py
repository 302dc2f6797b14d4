"""redis-py clients whose sockets are gevent's, so that Redis never blocks the hub.

The server runs on one gevent hub without monkey-patching. redis-py does all its I/O through
the socket object that ``Connection._connect`` returns (``sendall``, ``recv_into``, timeouts by
``settimeout``), so returning a :mod:`gevent.socket` socket there is enough to make every command,
``XREAD BLOCK`` included, wait on the hub instead of in the kernel. Name resolution goes through
:func:`gevent.socket.getaddrinfo` (gevent's resolver, off the hub) for the same reason.

What else in redis-py could block the hub, and why it does not here:

- retries sleep with :func:`time.sleep`: every client made here has ``Retry(NoBackoff(), 0)``,
  no retry at all. Whether and when to try again is the caller's decision (the backend waits
  with :func:`gevent.sleep`), which also keeps a write from being sent twice behind its back;
- the connection pool takes a ``threading.RLock``, but only around list operations, never
  across I/O, so greenlets of one thread never wait on it; each greenlet that runs a command
  at the same time gets a connection of its own (``max_connections`` bounds them);
- the hiredis parser's ``can_read(timeout)`` polls with ``select.poll``: it is called with a
  timeout only by ``PubSub.get_message(timeout=...)``, which this package does not use (the
  pool calls it with 0, a non-blocking check);
- RESP3 and its maintenance notifications are off (``protocol=2``);
- TLS (``rediss://``) would need :mod:`gevent.ssl` in place of redis-py's :mod:`ssl` wrapping,
  and is refused until it has it.

CPU is the other way to hold the hub: a pipeline of thousands of commands is encoded and its
replies parsed without a wait in between. :func:`pipelined` cuts it into chunks and yields
between them.
"""
from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from typing import Any

import gevent
import gevent.socket
from redis.backoff import NoBackoff
from redis.retry import Retry

import redis
from redis.connection import Connection, UnixDomainSocketConnection, parse_url

#: Commands per pipeline chunk in :func:`pipelined`. On the project's VM 10,000 ``XADD`` in one
#: pipeline held the hub for 28-45 ms (redis-py encodes them all, then parses every reply without
#: a wait); chunks of 500 hold it for 2-8 ms (a 1 ms ticker's worst lateness).
PIPELINE_CHUNK = 500


class GeventConnection(Connection):
    """A TCP connection on a gevent socket (see the module docstring)."""

    def _connect(self) -> socket.socket:
        error: OSError | None = None
        for family, kind, proto, _, address in gevent.socket.getaddrinfo(
            self.host, self.port, self.socket_type, socket.SOCK_STREAM
        ):
            sock = gevent.socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.socket_keepalive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                    for option, value in (self.socket_keepalive_options or {}).items():
                        sock.setsockopt(socket.IPPROTO_TCP, option, value)
                sock.settimeout(self.socket_connect_timeout)
                sock.connect(address)
                sock.settimeout(self.socket_timeout)
                return sock
            except OSError as exc:
                error = exc
                sock.close()
        raise error if error is not None else OSError(f"no address for {self.host}:{self.port}")


class GeventUnixConnection(UnixDomainSocketConnection):
    """A unix-socket connection on a gevent socket."""

    def _connect(self) -> socket.socket:
        sock = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.socket_connect_timeout)
            sock.connect(self.path)
            sock.settimeout(self.socket_timeout)
        except OSError:
            sock.close()
            raise
        return sock


def connect(
    url: str,
    *,
    name: str | None = None,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    max_connections: int = 16,
) -> redis.Redis:
    """A client for ``url`` (``redis://HOST:PORT/DB`` or ``unix:///path?db=N``) whose
    connections are gevent sockets. Nothing is sent until the first command.

    ``socket_timeout`` bounds every reply: a command that waits on the server for longer (a
    ``XREAD BLOCK`` needs a client whose timeout is above its block time) raises
    :class:`redis.TimeoutError`, and the connection is closed. ``name`` is shown by
    ``CLIENT LIST``. Raises :class:`ValueError` for a URL it cannot serve.
    """
    options = parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    kind = options.pop("connection_class", Connection)
    if kind is UnixDomainSocketConnection:
        connection_class: type[Connection] | type[UnixDomainSocketConnection] = GeventUnixConnection
    elif kind is Connection:
        connection_class = GeventConnection
    else:
        raise ValueError(f"{url.split(':', 1)[0]}:// is not supported yet (TLS needs gevent.ssl)")
    pool = redis.ConnectionPool(
        connection_class=connection_class,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
        client_name=name,
        **options,
    )
    return redis.Redis(connection_pool=pool)


def pipelined(client: redis.Redis, commands: Iterable[Sequence[Any]], chunk: int = PIPELINE_CHUNK) -> list[Any]:
    """Run ``commands`` (each a sequence of command words and arguments) in non-transactional
    pipelines of ``chunk``, yielding to the hub between them; their replies, in order.

    An error reply raises :class:`redis.ResponseError` after its chunk ran (the commands before
    it in the chunk ran too: a pipeline is not a transaction).
    """
    replies: list[Any] = []
    batch: list[Sequence[Any]] = []
    for command in commands:
        batch.append(command)
        if len(batch) >= chunk:
            replies.extend(_run(client, batch))
            batch = []
            gevent.sleep(0)
    if batch:
        replies.extend(_run(client, batch))
    return replies


def _run(client: redis.Redis, batch: list[Sequence[Any]]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for command in batch:
        pipe.execute_command(*command)  # type: ignore[no-untyped-call]  # untyped in redis-py
    return pipe.execute()
