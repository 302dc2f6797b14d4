"""The SSE manager: fans every event out to every client that wants it, never waiting for one.

How a stream goes (see :meth:`SSEManager.serve`):

1. In the request's own greenlet: write the response head, ``retry:``, ``connected``, and the
   history after the client's ``Last-Event-ID``, in batches, with ordinary cooperative writes
   (a slow reader only slows its own greenlet). When a read of history comes back empty the
   client is caught up, and in the same breath (no yield in between, so no event can slip
   through) it is registered as live. The request greenlet then ends.
2. Live, a client is a plain non-blocking socket, a queue of frames, and a libev read watcher
   (to notice a hang-up at once). Publishing appends the event's frame, encoded once for all
   clients, to each queue and marks the client dirty; one hub callback then writes each dirty
   client's whole queue in one ``send``. No greenlet and no thread per client: at 1,000 clients
   one loop over sockets costs about half of what a greenlet per client costs.
3. A queue past ``queue_size`` events or ``queue_bytes`` bytes means the client does not keep
   up: it is dropped at once (after a last-chance ``event: error`` ``slow_consumer`` if its
   socket still takes it). It reconnects with its ``Last-Event-ID`` and loses nothing.

All of this runs on the gevent hub's thread; hub callbacks here never block or switch.
"""
from __future__ import annotations

import errno
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Callable

import gevent
from gevent.hub import get_hub

from supervisor import events, signals
from supervisor.events import Event, rfc3339
from supervisor.eventlog import EventLog

from . import sse

log = logging.getLogger(__name__)

#: Events read from history per batch while replaying.
REPLAY_BATCH = 1000
#: A replaying client that takes no bytes for this long is given up.
REPLAY_WRITE_TIMEOUT_S = 30.0

_SLOW_FRAME = sse.frame(json.dumps({"reason": "slow_consumer"}), "error")
_READ, _WRITE = 1, 2


class Client:
    """One live stream: a socket, its queue of unsent frames, and its counters."""

    __slots__ = (
        "id", "agent", "sock", "remote_addr", "connected_at", "plain", "pending", "pending_bytes",
        "offset", "sent", "dirty", "closing", "closed", "read_watcher", "write_watcher",
    )

    def __init__(self, client_id: str, agent: str | None, remote_addr: str, plain: bool) -> None:
        self.id = client_id
        self.agent = agent
        self.sock: socket.socket | None = None
        self.remote_addr = remote_addr
        self.connected_at = time.time()
        self.plain = plain
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.offset = 0  # bytes of pending[0] already sent
        self.sent = 0  # events written to the socket
        self.dirty = False
        self.closing = False  # end the response once the queue is written
        self.closed = False
        self.read_watcher: Any = None
        self.write_watcher: Any = None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "connected_at": rfc3339(self.connected_at),
            "queued": len(self.pending),
            "queued_bytes": self.pending_bytes,
            "sent": self.sent,
            "remote_addr": self.remote_addr,
        }


def plain_frame(event: Event) -> bytes:
    """The frame for clients that asked for ``strip_ansi``: ``line`` without escape sequences."""
    data = event.data
    if event.type != events.LOG or "plain" not in data:
        return sse.event_frame(event)
    stripped = {k: v for k, v in data.items() if k != "plain"}
    stripped["line"] = data["plain"]
    return sse.event_frame(Event(event.id, event.type, event.agent_name, stripped, event.timestamp))


class SSEManager:
    """Every SSE client of one server, and the counters ``/api/sse/stats`` shows.

    ``is_done(agent)`` tells whether an agent will produce nothing more (so that its stream ends
    after the replay).
    """

    def __init__(
        self,
        eventlog: EventLog,
        *,
        is_done: Callable[[str], bool],
        queue_size: int = 100,
        queue_bytes: int = 1 << 20,
        keepalive_s: float = 15.0,
        retry_ms: int = 3000,
        max_clients: int = 10_000,
        max_clients_per_agent: int = 5_000,
    ) -> None:
        self.eventlog = eventlog
        self.is_done = is_done
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.keepalive_s = keepalive_s
        self.retry_ms = retry_ms
        self.max_clients = max_clients
        self.max_clients_per_agent = max_clients_per_agent
        self.started_at = time.time()
        self._by_agent: dict[str, set[Client]] = {}
        self._all: set[Client] = set()
        self._clients: dict[str, Client] = {}  # live and replaying
        self._dirty: list[Client] = []
        self._flush_scheduled = False
        self._next_client = 0
        self._loop = get_hub().loop
        self._pinger: gevent.Greenlet[..., Any] | None = None
        self.events_delivered = 0
        self.bytes_delivered = 0
        self.clients_dropped_slow = 0
        self.clients_connected_total = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        for signal in signals.BY_TYPE.values():
            signal.connect(self._on_event, weak=False)
        self._pinger = gevent.spawn(self._ping_forever)

    def close(self) -> None:
        """Disconnect from the bus and end every stream (the server is shutting down)."""
        for signal in signals.BY_TYPE.values():
            signal.disconnect(self._on_event)
        if self._pinger is not None:
            self._pinger.kill(block=False)
        for client in list(self._clients.values()):
            if client.sock is not None:
                client.closing = True
                self._write(client)
            self._close(client, "server shutting down")

    # -- admission -------------------------------------------------------------------------

    def over_limit(self, agent: str | None) -> str | None:
        """Why a new client of ``agent`` (None: the all-agents stream) is refused, or None."""
        if len(self._clients) >= self.max_clients:
            return f"the server has its maximum of {self.max_clients} stream clients"
        if agent is not None and len(self._by_agent.get(agent, ())) >= self.max_clients_per_agent:
            return f"agent {agent!r} has its maximum of {self.max_clients_per_agent} stream clients"
        return None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def clients_of(self, agent: str) -> int:
        return len(self._by_agent.get(agent, ()))

    # -- one stream ------------------------------------------------------------------------

    def serve(
        self,
        gsock: Any,
        *,
        agent: str | None,
        last_id: int | None,
        remote_addr: str,
        plain: bool = False,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Run a stream on ``gsock`` (a gevent socket taken from pywsgi) until it is live.

        Blocks the calling (request) greenlet during the replay only; returns once the client
        is registered with the writer loop, or once the stream has ended (a finished agent,
        a client that went away).
        """
        self._next_client += 1
        client = Client(f"c{self._next_client}", agent, remote_addr, plain)
        self._clients[client.id] = client
        self.clients_connected_total += 1
        try:
            # Writes are batched here already; Nagle's algorithm would only add delayed-ACK waits.
            gsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            gsock.settimeout(REPLAY_WRITE_TIMEOUT_S)
            head = [
                "HTTP/1.1 200 OK",
                "Content-Type: text/event-stream; charset=utf-8",
                "Cache-Control: no-cache",
                "X-Accel-Buffering: no",
                "Connection: close",
                *(f"{k}: {v}" for k, v in extra_headers),
            ]
            connected = {"client_id": client.id, "agent_name": agent, "last_event_id": last_id}
            gsock.sendall(
                ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
                + sse.retry(self.retry_ms)
                + sse.frame(json.dumps(connected), "connected")
            )
            if self._replay(client, gsock, agent, last_id or 0, reset_check=last_id is not None):
                fd = gsock.detach()  # from here on a plain socket: the writer loop's
                self._go_live(client, socket.socket(fileno=fd))
                return
        except OSError as exc:
            log.debug("client %s went away during replay: %s", client.id, exc)
        self._clients.pop(client.id, None)
        gsock.close()

    def _replay(self, client: Client, gsock: Any, agent: str | None, after: int, reset_check: bool) -> bool:
        """Send history after ``after``; True when caught up and still to go live, False when
        the stream is over (the agent is done and everything was sent)."""
        frame_of = plain_frame if client.plain else sse.event_frame
        first = True
        while True:
            replay = self.eventlog.read_after(after, agent, limit=REPLAY_BATCH)
            chunks = []
            if first and reset_check and replay.reset:
                info = {"missed": replay.missed, "first_available": replay.first_available}
                chunks.append(sse.frame(json.dumps(info), "reset"))
            first = False
            if not replay.events:
                if agent is not None and self.is_done(agent):
                    return False
                return True  # caught up: the caller registers without yielding first
            for event in replay.events:
                if agent is None or event.type not in (events.AGENT_ADDED, events.AGENT_REMOVED):
                    chunks.append(frame_of(event))
            after = replay.events[-1].id
            data = b"".join(chunks)
            gsock.sendall(data)  # yields: live events keep accumulating in history meanwhile
            client.sent += len(chunks)
            self.events_delivered += len(chunks)
            self.bytes_delivered += len(data)

    def _go_live(self, client: Client, sock: socket.socket) -> None:
        sock.setblocking(False)
        client.sock = sock
        if client.agent is None:
            self._all.add(client)
        else:
            self._by_agent.setdefault(client.agent, set()).add(client)
        watcher = self._loop.io(sock.fileno(), _READ)
        watcher.start(self._on_readable, client)
        client.read_watcher = watcher

    # -- publishing ------------------------------------------------------------------------

    def _on_event(self, sender: str, event: Event) -> None:
        """Receiver of every signal: queue the event's frame for each client that wants it."""
        agent_clients = self._by_agent.get(sender)
        broadcast = event.type in (events.AGENT_ADDED, events.AGENT_REMOVED)
        if broadcast and agent_clients and event.type == events.AGENT_REMOVED:
            for client in list(agent_clients):
                client.closing = True
                self._mark(client)
        groups = [self._all] if broadcast else [g for g in (agent_clients, self._all) if g]
        if not any(groups):
            return
        frame = sse.event_frame(event)
        plain: bytes | None = None
        slow: list[Client] = []
        queue_size, queue_bytes = self.queue_size, self.queue_bytes
        dirty = self._dirty
        for group in groups:
            for client in group:
                if client.plain:
                    if plain is None:
                        plain = plain_frame(event)
                    data = plain
                else:
                    data = frame
                pending = client.pending
                pending.append(data)
                client.pending_bytes += len(data)
                if len(pending) > queue_size or client.pending_bytes > queue_bytes:
                    slow.append(client)
                elif not client.dirty:
                    client.dirty = True
                    dirty.append(client)
        if event.type == events.COMPLETE and agent_clients:
            for client in agent_clients:
                client.closing = True
        for client in slow:
            self._drop_slow(client)
        if dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush)

    def _mark(self, client: Client) -> None:
        if not client.dirty:
            client.dirty = True
            self._dirty.append(client)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush)

    def _flush(self) -> None:
        # A hub callback: runs once per loop iteration in which events were published.
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for client in dirty:
            client.dirty = False
            if not client.closed and client.write_watcher is None:
                self._write(client)

    def _write(self, client: Client) -> None:
        """Write as much of the client's queue as the socket takes, in one ``send``."""
        sock = client.sock
        if sock is None or client.closed:
            return
        pending = client.pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            if client.offset:
                data = data[client.offset:]
            try:
                written = sock.send(data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                self._close(client, f"write failed: {exc.strerror or exc}")
                return
            self.bytes_delivered += written
            if written == len(data):
                client.sent += len(pending)
                self.events_delivered += len(pending)
                pending.clear()
                client.pending_bytes = 0
                client.offset = 0
            else:
                self._consume(client, written)
                if client.write_watcher is None:
                    watcher = self._loop.io(sock.fileno(), _WRITE)
                    watcher.start(self._on_writable, client)
                    client.write_watcher = watcher
                return
        if client.closing:
            self._close(client, "stream ended", graceful=True)

    def _consume(self, client: Client, written: int) -> None:
        """Account for a partial write: drop whole frames sent, remember the offset into the next."""
        pending = client.pending
        written += client.offset
        while pending and written >= len(pending[0]):
            size = len(pending.popleft())
            written -= size
            client.pending_bytes -= size
            client.sent += 1
            self.events_delivered += 1
        client.offset = written

    def _on_writable(self, client: Client) -> None:
        watcher, client.write_watcher = client.write_watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()
        self._write(client)

    def _on_readable(self, client: Client) -> None:
        sock = client.sock
        if sock is None:
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(client, f"read failed: {exc.strerror or exc}")
            return
        if not data:
            self._close(client, "client disconnected")
        # Anything a client sends on a stream is meaningless; it is read only to notice EOF.

    def _drop_slow(self, client: Client) -> None:
        self.clients_dropped_slow += 1
        log.info(
            "dropping slow client %s (%s, agent %s): %d events / %d bytes queued",
            client.id, client.remote_addr, client.agent or "*", len(client.pending), client.pending_bytes,
        )
        sock = client.sock
        if sock is not None:
            # Finish a frame cut by a partial write, then say why, if the socket still takes it.
            tail = client.pending[0][client.offset:] if client.offset and client.pending else b""
            try:
                sock.send(tail + _SLOW_FRAME)
            except OSError:
                pass
        self._close(client, "slow consumer")

    def _close(self, client: Client, reason: str, graceful: bool = False) -> None:
        if client.closed:
            return
        client.closed = True
        self._clients.pop(client.id, None)
        if client.agent is None:
            self._all.discard(client)
        else:
            group = self._by_agent.get(client.agent)
            if group is not None:
                group.discard(client)
                if not group:
                    del self._by_agent[client.agent]
        for watcher in (client.read_watcher, client.write_watcher):
            if watcher is not None:
                watcher.stop()
                watcher.close()
        client.read_watcher = client.write_watcher = None
        client.pending.clear()
        client.pending_bytes = 0
        sock, client.sock = client.sock, None
        if sock is not None:
            try:
                if graceful:
                    sock.shutdown(socket.SHUT_WR)
                    try:  # unread input would turn close() into a reset that loses our tail
                        while sock.recv(4096):
                            pass
                    except OSError:
                        pass
            except OSError as exc:
                if exc.errno not in (errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET):
                    log.debug("shutdown of %s: %s", client.id, exc)
            finally:
                sock.close()
        log.debug("client %s closed: %s", client.id, reason)

    # -- keep-alive ------------------------------------------------------------------------

    def _ping_forever(self) -> None:
        while True:
            gevent.sleep(self.keepalive_s)
            self.ping()

    def ping(self) -> None:
        """Queue a ``ping`` for every live client: it keeps proxies from timing out an idle
        stream, and a failed write is how a client that vanished without a FIN is noticed."""
        live = list(self._all)
        for group in self._by_agent.values():
            live.extend(group)
        if not live:
            return
        data = sse.frame(json.dumps({"time": rfc3339(time.time())}), "ping")
        slow = []
        for client in live:
            client.pending.append(data)
            client.pending_bytes += len(data)
            if len(client.pending) > self.queue_size or client.pending_bytes > self.queue_bytes:
                slow.append(client)
            else:
                self._mark(client)
        for client in slow:
            self._drop_slow(client)

    # -- monitoring ------------------------------------------------------------------------

    def stats(self, agent_names: Iterable[str]) -> dict[str, Any]:
        per_agent = {name: len(self._by_agent.get(name, ())) for name in agent_names}
        return {
            "total_agents": len(per_agent),
            "total_clients": len(self._clients),
            "agents": per_agent,
            "all_stream_clients": len(self._all),
            "events_published": self.eventlog.events_published,
            "events_delivered": self.events_delivered,
            "bytes_delivered": self.bytes_delivered,
            "clients_dropped_slow": self.clients_dropped_slow,
            "clients_connected_total": self.clients_connected_total,
            "uptime_s": round(time.time() - self.started_at, 3),
            "clients": [c.describe() for c in self._clients.values()],
        }
