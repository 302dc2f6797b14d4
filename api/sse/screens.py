"""The screen streams: ``GET /api/agents/<name>/screen/stream``, a snapshot and then row diffs.

Separate from the event log and its streams: a screen is state, not history, so a client that
connects (or reconnects) gets the screen as it is now, and nothing to replay.

- A client first gets ``retry:``, ``connected``, then ``snapshot`` (or ``no_screen`` while the
  run has none: ``auto`` waits for the alternate screen).
- When the screen changes, the agent's :class:`_Group` flushes at most every
  :data:`INTERVAL_S`: each client gets ``diff``, the rows changed since the ``seq`` it has
  (:meth:`~supervisor.screen.VirtualScreen.changes`). Frames are made once per flush for each
  ``seq`` the clients are at (usually one), never once per client.
- A client whose socket does not take a whole frame keeps only the unsent rest of that frame;
  it is sent nothing else until its socket takes it, and then a fresh ``snapshot``. Falling
  behind costs one partial frame of memory, and the client is never dropped for it.
- A new run gives every client a ``snapshot`` of the new screen (or ``no_screen``).

All of it runs in hub callbacks and libev watchers: no greenlet or thread per client, and no
write ever blocks. The request greenlet writes the response head (``handover.open_response``)
and is done. A ``ping`` every keep-alive interval notices clients that vanished, and streams of
an agent that was removed (or replaced by a new one of the same name) are ended then.
"""
from __future__ import annotations

import errno
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent.hub import get_hub

from supervisor.events import rfc3339
from supervisor.screen.live import LiveScreen

from . import frames, handover

log = logging.getLogger(__name__)

#: Diffs are coalesced and sent at most this often per agent.
INTERVAL_S = 0.05
_READ, _WRITE = 1, 2


def _frame(kind: str, payload: dict[str, Any]) -> bytes:
    return frames.frame(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), kind)


class _Client:
    """One screen stream's socket and what it has been sent."""

    __slots__ = ("group", "id", "pending", "read_watcher", "remote_addr", "screen", "seq", "sock",
                 "write_watcher")

    def __init__(self, client_id: str, group: _Group, sock: socket.socket, remote_addr: str) -> None:
        self.id = client_id
        self.group = group
        self.sock: socket.socket | None = sock
        self.remote_addr = remote_addr
        self.screen: object | None = None  # the screen it has a snapshot of (None: needs one)
        self.seq = -1  # the screen's seq it has
        self.pending = b""  # the unsent rest of a frame: the client is behind
        self.read_watcher: Any = None
        self.write_watcher: Any = None


class _Group:
    """The screen clients of one agent, and the timer that coalesces their diffs."""

    def __init__(self, name: str, live: LiveScreen) -> None:
        self.name = name
        self.live = live
        self.clients: set[_Client] = set()
        self.timer: Any = None
        self.last_flush = 0.0
        self.unwatch: Callable[[], None] | None = None


class ScreenStreams:
    """Every screen stream of one server. ``live_of(name)`` gives an agent's
    :class:`~supervisor.screen.live.LiveScreen` (None once it is gone)."""

    def __init__(self, live_of: Callable[[str], LiveScreen | None], *, keepalive_s: float = 15.0,
                 retry_ms: int = 3000, max_clients: int = 10_000, max_clients_per_agent: int = 5_000,
                 interval_s: float = INTERVAL_S) -> None:
        self.live_of = live_of
        self.keepalive_s = keepalive_s
        self.retry_ms = retry_ms
        self.max_clients = max_clients
        self.max_clients_per_agent = max_clients_per_agent
        self.interval_s = interval_s
        self._groups: dict[str, _Group] = {}
        self._clients: dict[str, _Client] = {}
        self._next = 0
        self._loop = get_hub().loop
        self._pinger: gevent.Greenlet[..., Any] | None = None
        #: Snapshots sent to clients that had fallen behind (for /api/sse/stats and tests).
        self.snapshots_for_slow = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._pinger is None:
            self._pinger = gevent.spawn(self._ping_forever)

    def close(self) -> None:
        """End every screen stream (the server is shutting down). Idempotent."""
        if self._pinger is not None:
            self._pinger.kill(block=False)
            self._pinger = None
        for client in list(self._clients.values()):
            self._close(client, "server shutting down")

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def over_limit(self, name: str) -> str | None:
        """Why one more screen client of ``name`` is refused, or None."""
        if len(self._clients) >= self.max_clients:
            return f"the server has its maximum of {self.max_clients} screen stream clients"
        group = self._groups.get(name)
        if group is not None and len(group.clients) >= self.max_clients_per_agent:
            return f"agent {name!r} has its maximum of {self.max_clients_per_agent} screen stream clients"
        return None

    def describe(self) -> list[dict[str, Any]]:
        return [{"id": c.id, "agent": c.group.name, "seq": c.seq, "behind": bool(c.pending),
                 "remote_addr": c.remote_addr} for c in self._clients.values()]

    # -- one stream ------------------------------------------------------------------------

    def serve(self, gsock: Any, *, name: str, live: LiveScreen, remote_addr: str,
              extra_headers: Iterable[tuple[str, str]] = ()) -> None:
        """Write the head on ``gsock`` (a gevent socket taken from pywsgi), then hand the
        connection to the hub. Blocks the calling greenlet only while the head is written."""
        self._next += 1
        client_id = f"s{self._next}"
        try:
            handover.open_response(gsock, extra_headers, frames.retry(self.retry_ms) + frames.named(
                "connected", {"client_id": client_id, "agent_name": name}))
        except OSError as exc:
            log.debug("screen client %s went away before its head: %s", client_id, exc)
            gsock.close()
            return
        group = self._groups.get(name)
        if group is None or group.live is not live:
            if group is not None:
                self._end_group(group, "the agent was replaced")
            group = self._groups[name] = _Group(name, live)
            group.unwatch = live.watch(lambda: self._schedule(group))
        client = _Client(client_id, group, handover.take_socket(gsock), remote_addr)
        group.clients.add(client)
        self._clients[client_id] = client
        assert client.sock is not None
        watcher = self._loop.io(client.sock.fileno(), _READ)
        watcher.start(self._on_readable, client)
        client.read_watcher = watcher
        self._send_next(client, {})

    # -- flushing --------------------------------------------------------------------------

    def _schedule(self, group: _Group) -> None:
        """The agent's screen changed: flush once the interval since the last flush is over."""
        if group.timer is not None or not group.clients:
            return
        delay = max(0.0, group.last_flush + self.interval_s - time.monotonic())
        group.timer = self._loop.timer(delay)
        group.timer.start(self._flush, group)

    def _flush(self, group: _Group) -> None:
        # A libev timer callback: every client that is not behind gets what changed.
        timer, group.timer = group.timer, None
        if timer is not None:
            timer.close()
        group.last_flush = time.monotonic()
        made: dict[tuple[Any, ...], bytes] = {}
        for client in tuple(group.clients):
            if not client.pending and client.sock is not None:
                self._send_next(client, made)

    def _send_next(self, client: _Client, made: dict[tuple[Any, ...], bytes]) -> None:
        """Send ``client`` what it lacks: a snapshot of a screen it has not seen, the diff
        since its ``seq``, ``no_screen``, or nothing. ``made`` keeps the frames of one flush,
        by what their clients had: each is made once."""
        live = client.group.live
        screen = live.current
        if screen is None:
            key: tuple[Any, ...] = ("none", live.run)
            if client.screen == key:
                return
            if key not in made:
                made[key] = _frame("no_screen", {"run": live.run, "mode": live.mode})
            client.screen, client.seq = key, -1
        elif client.screen is not screen:
            key = ("snapshot", id(screen), screen.seq)
            if key not in made:
                made[key] = _frame("snapshot", {**screen.snapshot(), "run": live.run})
            client.screen, client.seq = screen, screen.seq
        elif client.seq < screen.seq:
            key = ("diff", id(screen), client.seq, screen.seq)
            if key not in made:
                made[key] = _frame("diff", {**screen.changes(client.seq), "since": client.seq, "run": live.run})
            client.seq = screen.seq
        else:
            return
        self._write(client, made[key])

    def _write(self, client: _Client, data: bytes) -> None:
        """One non-blocking send; what the socket does not take waits for it to be writable."""
        sock = client.sock
        if sock is None:
            return
        try:
            written = sock.send(data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._close(client, f"write failed: {exc.strerror or exc}")
            return
        if written < len(data):
            client.pending = data[written:]
            watcher = self._loop.io(sock.fileno(), _WRITE)
            watcher.start(self._on_writable, client)
            client.write_watcher = watcher

    def _on_writable(self, client: _Client) -> None:
        watcher, client.write_watcher = client.write_watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()
        pending, client.pending = client.pending, b""
        if not pending or client.sock is None:
            return
        self._write(client, pending)
        if client.pending or client.sock is None:
            return
        # Caught up with the frame it was behind on: from here a fresh snapshot, not the diffs
        # it missed meanwhile.
        self.snapshots_for_slow += 1
        client.screen, client.seq = None, -1
        self._send_next(client, {})

    # -- ending ----------------------------------------------------------------------------

    def _on_readable(self, client: _Client) -> None:
        sock = client.sock
        if sock is None:
            return
        reason = handover.eof_reason(sock)
        if reason is not None:
            self._close(client, reason)

    def _close(self, client: _Client, reason: str) -> None:
        sock, client.sock = client.sock, None
        if sock is None:
            return
        self._clients.pop(client.id, None)
        group = client.group
        group.clients.discard(client)
        if not group.clients:
            self._end_group(group, "no clients")
        for watcher in (client.read_watcher, client.write_watcher):
            if watcher is not None:
                watcher.stop()
                watcher.close()
        client.read_watcher = client.write_watcher = None
        client.pending = b""
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            if exc.errno not in (errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET):
                log.debug("shutdown of %s: %s", client.id, exc)
        finally:
            sock.close()
        log.debug("screen client %s closed: %s", client.id, reason)

    def _end_group(self, group: _Group, reason: str) -> None:
        if self._groups.get(group.name) is group:
            del self._groups[group.name]
        if group.unwatch is not None:
            group.unwatch()
            group.unwatch = None
        if group.timer is not None:
            group.timer.stop()
            group.timer.close()
            group.timer = None
        for client in tuple(group.clients):
            self._close(client, reason)

    # -- keep-alive ------------------------------------------------------------------------

    def _ping_forever(self) -> None:
        while True:
            gevent.sleep(self.keepalive_s)
            self.ping()

    def ping(self) -> None:
        """A ``ping`` to every client not behind; the streams of an agent that is gone (or was
        replaced by a new one) end."""
        data = frames.named("ping", {"time": rfc3339(time.time())})
        for group in list(self._groups.values()):
            if self.live_of(group.name) is not group.live:
                self._end_group(group, "the agent is gone")
                continue
            for client in tuple(group.clients):
                if not client.pending:
                    self._write(client, data)
