"""The SSE manager: fans every event out to every client that wants it, never waiting for one.

How a stream goes (see :meth:`SSEManager.serve`):

1. In the request's own greenlet: write the response head, ``retry:``, ``connected``, and the
   history after the client's ``Last-Event-ID``, in batches, with ordinary cooperative writes
   (a slow reader only slows its own greenlet). When a read of history comes back empty the
   client is caught up, and in the same breath (no yield in between, so no event can slip
   through) it is registered as live. The request greenlet then ends.
2. Live, a client is a plain non-blocking socket and a libev read watcher (to notice a hang-up
   at once). Publishing is O(1) whatever the number of clients: the event joins the outbox of
   its agent's stream and of the all-agents stream. Once per hub loop iteration a callback
   frames and joins each outbox once and hands the same bytes to each of its clients in one
   ``send``. No greenlet and no thread per client: at 1,000 clients one loop over sockets costs
   about half of what a greenlet per client costs.
3. What a socket does not take waits in the client's backlog; a backlog past ``queue_size``
   events or ``queue_bytes`` bytes means the client does not keep up: it is dropped at once
   (after a last-chance ``event: error`` ``slow_consumer`` if its socket still takes it). It reconnects with its ``Last-Event-ID`` and loses nothing.

All of this runs on the gevent hub's thread; hub callbacks here never block or switch.
"""
from __future__ import annotations

import errno
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator
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
    """One live stream: a socket, the bytes it has not taken yet, and its counters.

    ``pending`` holds ``[bytes, events]`` chunks that the socket would not take: usually
    empty, since a flush hands each client the whole batch in one ``send``. ``fast`` tells
    whether the client is in its group's fast path (see :class:`Group`); while it is, the
    events handed to it are counted by the group, and ``fast_since`` is where it joined.
    """

    __slots__ = (
        "id", "agent", "sock", "remote_addr", "connected_at", "plain", "pending", "pending_bytes",
        "pending_events", "sent", "skip_until", "closing", "closed", "read_watcher", "write_watcher",
        "group", "fast", "fast_since",
    )

    def __init__(self, client_id: str, agent: str | None, remote_addr: str, plain: bool) -> None:
        self.id = client_id
        self.agent = agent
        self.sock: socket.socket | None = None
        self.remote_addr = remote_addr
        self.connected_at = time.time()
        self.plain = plain
        self.pending: deque[list[Any]] = deque()
        self.pending_bytes = 0
        self.pending_events = 0
        self.sent = 0  # events handed to the socket
        self.skip_until = 0  # replayed up to this id: skip older events still in the outbox
        self.closing = False  # end the response once everything pending is written
        self.closed = False
        self.read_watcher: Any = None
        self.write_watcher: Any = None
        self.group: Group | None = None  # set when live
        self.fast = False
        self.fast_since = 0

    @property
    def events_sent(self) -> int:
        """Events handed to the socket, including those counted by the group's fast path."""
        group = self.group
        return self.sent + (group.fast_events - self.fast_since if self.fast and group is not None else 0)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "connected_at": rfc3339(self.connected_at),
            "queued": self.pending_events,
            "queued_bytes": self.pending_bytes,
            "sent": self.events_sent,
            "remote_addr": self.remote_addr,
        }


class Group:
    """The live clients of one stream: one agent's, or the all-agents stream.

    A client that is caught up and has nothing special about it is in ``fast``, keyed by its
    socket, and the flush's hot loop is a walk over those sockets with one ``send`` each: the
    loop of the simplest fan-out there is, touching no other object per client. (A loop over
    client objects calling a stored ``send`` measured 6-10 points of CPU more at 5,000 clients:
    two more cache misses per send.) Clients with a backlog, a replay overlap to skip or
    ``strip_ansi`` are in ``special`` and get their share one by one. ``fast_events`` counts
    the events handed to every fast client, so that no per-client counter is touched either.
    """

    __slots__ = ("fast", "special", "fast_events")

    def __init__(self) -> None:
        self.fast: dict[socket.socket, Client] = {}
        self.special: set[Client] = set()
        self.fast_events = 0

    def __len__(self) -> int:
        return len(self.fast) + len(self.special)

    def __iter__(self) -> Iterator[Client]:
        yield from self.fast.values()
        yield from self.special


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
        self._by_agent: dict[str, Group] = {}  # only agents with clients
        self._all = Group()
        self._clients: dict[str, Client] = {}  # live and replaying
        self._outbox: dict[str | None, list[Event]] = {}
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
        self._flush()
        for client in list(self._clients.values()):
            if client.sock is not None and client.pending:
                self._write(client)  # a last non-blocking try
            self._close(client, "server shutting down", graceful=True)

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
            caught_up = self._replay(client, gsock, agent, last_id or 0, reset_check=last_id is not None)
            if caught_up is not None:
                fd = gsock.detach()  # from here on a plain socket: the writer loop's
                self._go_live(client, socket.socket(fileno=fd), caught_up)
                return
        except OSError as exc:
            log.debug("client %s went away during replay: %s", client.id, exc)
        self._clients.pop(client.id, None)
        gsock.close()

    def _replay(self, client: Client, gsock: Any, agent: str | None, after: int, reset_check: bool) -> int | None:
        """Send history after ``after``. Returns the last id sent once caught up (the caller
        registers the client without yielding first), or None when the stream is over (the
        agent is done and everything was sent)."""
        frame_of = plain_frame if client.plain else sse.event_frame
        chunks = []
        replay = self.eventlog.read_after(after, agent, limit=REPLAY_BATCH)
        if reset_check and replay.reset:
            info = {"missed": replay.missed, "first_available": replay.first_available}
            chunks.append(sse.frame(json.dumps(info), "reset"))
        while True:
            sent = 0
            for event in replay.events:
                if agent is None or event.type not in (events.AGENT_ADDED, events.AGENT_REMOVED):
                    chunks.append(frame_of(event))
                    sent += 1
            if chunks:
                data = b"".join(chunks)
                gsock.sendall(data)  # yields: live events keep accumulating in history meanwhile
                client.sent += sent
                self.events_delivered += sent
                self.bytes_delivered += len(data)
                chunks = []
            if replay.events:
                after = replay.events[-1].id
            else:
                return None if agent is not None and self.is_done(agent) else after
            replay = self.eventlog.read_after(after, agent, limit=REPLAY_BATCH)

    def _go_live(self, client: Client, sock: socket.socket, last_id: int) -> None:
        sock.setblocking(False)
        client.sock = sock
        # Events published but not yet flushed are in history, and so may have been replayed.
        client.skip_until = last_id if self._outbox.get(client.agent) else 0
        group = self._all if client.agent is None else self._by_agent.setdefault(client.agent, Group())
        client.group = group
        group.special.add(client)
        self._maybe_fast(client)
        watcher = self._loop.io(sock.fileno(), _READ)
        watcher.start(self._on_readable, client)
        client.read_watcher = watcher

    # -- publishing ------------------------------------------------------------------------

    def _on_event(self, sender: str, event: Event) -> None:
        """Receiver of every signal: O(1), whatever the number of clients. The event joins the
        outbox of its agent's stream and of the all-agents stream; one flush per hub loop
        iteration then writes each outbox to its clients."""
        kind = event.type
        if kind in (events.AGENT_ADDED, events.AGENT_REMOVED):
            if self._all:
                self._enqueue(None, event)
            group = self._by_agent.get(sender)
            if kind == events.AGENT_REMOVED and group:
                for client in tuple(group):
                    self._end_after_pending(client)
            return
        if sender in self._by_agent:
            self._enqueue(sender, event)
        if self._all:
            self._enqueue(None, event)

    def _enqueue(self, key: str | None, event: Event) -> None:
        box = self._outbox.get(key)
        if box is None:
            self._outbox[key] = [event]
        else:
            box.append(event)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.run_callback(self._flush)

    def _flush(self) -> None:
        # A hub callback, once per loop iteration in which events were published: each outbox
        # is framed and joined once, then handed to each of its clients in one send. The loop
        # over a group's fast sockets is the server's hot path (1,000 clients x 100 events/s
        # is 100,000 turns a second): one send and one comparison per client. What did not go
        # as planned there (a short write, an error) is dealt with after the loop.
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        for key, batch in outbox.items():
            group = self._all if key is None else self._by_agent.get(key)
            if not group:
                continue
            payload = b"".join([sse.event_frame(e) for e in batch])
            size = len(payload)
            count = len(batch)
            special = tuple(group.special)  # before the fast ones that fall out of the loop join
            fast = group.fast
            short: list[tuple[socket.socket, int, OSError | None]] = []
            for sock in fast:
                try:
                    written = sock.send(payload)
                except BlockingIOError:
                    written = 0
                except OSError as exc:
                    short.append((sock, -1, exc))
                    continue
                if written != size:
                    short.append((sock, written, None))
            whole = len(fast) - len(short)
            for sock, written, error in short:
                # Both ways out take the client from the fast path, counted up to this batch.
                client = fast[sock]
                if error is not None:
                    self._close(client, f"write failed: {error.strerror or error}")
                else:
                    self.bytes_delivered += written
                    self._keep_rest(client, payload, count, written)
            group.fast_events += count
            self.events_delivered += whole * count
            self.bytes_delivered += whole * size
            plain: list[bytes] = []  # the strip_ansi payload, framed once when a client wants it
            for client in special:
                if not client.closed:
                    self._deliver_special(client, batch, payload, plain)
            if key is not None and any(e.type == events.COMPLETE for e in batch):
                for client in tuple(group):
                    if not client.closed:
                        self._end_after_pending(client)

    def _deliver_special(self, client: Client, batch: list[Event], payload: bytes, plain: list[bytes]) -> None:
        """The flush for a client with a backlog, a replay overlap or ``strip_ansi``. ``plain``
        caches the batch's ``strip_ansi`` payload across the clients of one flush."""
        data, count = payload, len(batch)
        if client.skip_until or client.plain:
            fresh = [e for e in batch if e.id > client.skip_until]
            client.skip_until = 0
            if len(fresh) != count:
                frame_of = plain_frame if client.plain else sse.event_frame
                data = b"".join([frame_of(e) for e in fresh])
            elif client.plain:
                if not plain:
                    plain.append(b"".join([plain_frame(e) for e in batch]))
                data = plain[0]
            count = len(fresh)
        if count:
            self._deliver(client, data, count)
        self._maybe_fast(client)

    def _maybe_fast(self, client: Client) -> None:
        """Move a client into its group's fast path once nothing keeps it out."""
        group = client.group
        if (client.fast or group is None or client.sock is None or client.closed or client.closing
                or client.plain or client.pending or client.skip_until):
            return
        group.special.discard(client)
        group.fast[client.sock] = client
        client.fast = True
        client.fast_since = group.fast_events

    def _leave_fast(self, client: Client) -> None:
        group = client.group
        if not client.fast or group is None or client.sock is None:
            return
        del group.fast[client.sock]
        group.special.add(client)
        client.sent += group.fast_events - client.fast_since
        client.fast = False

    def _deliver(self, client: Client, data: bytes, count: int) -> None:
        """Hand ``data`` (``count`` events) to the client's socket, or queue it behind what the
        socket has not taken yet. A queue past its bounds drops the client."""
        if client.pending:
            client.pending.append([data, count])
            client.pending_bytes += len(data)
            client.pending_events += count
            if client.pending_events > self.queue_size or client.pending_bytes > self.queue_bytes:
                self._drop_slow(client)
            return
        sock = client.sock
        if sock is None:
            return
        written = self._send(client, sock, data)
        if written is None:
            return
        if written == len(data):
            client.sent += count
            self.events_delivered += count
            return
        self._keep_rest(client, data, count, written)

    def _keep_rest(self, client: Client, data: bytes, count: int, written: int) -> None:
        """The socket took ``written`` bytes of ``data`` (``count`` events): the rest becomes the
        client's backlog, written when the socket can take more (or the client is dropped)."""
        self._leave_fast(client)
        sock = client.sock
        assert sock is not None
        rest = data[written:]
        unsent = -(-count * len(rest) // len(data))  # events not (wholly) written, rounded up
        client.sent += count - unsent
        self.events_delivered += count - unsent
        client.pending.append([rest, unsent])
        client.pending_bytes = len(rest)
        client.pending_events = unsent
        if unsent > self.queue_size or len(rest) > self.queue_bytes:
            self._drop_slow(client)
            return
        watcher = self._loop.io(sock.fileno(), _WRITE)
        watcher.start(self._on_writable, client)
        client.write_watcher = watcher

    def _send(self, client: Client, sock: socket.socket, data: bytes) -> int | None:
        """One non-blocking send: bytes taken (0 when the socket is full), or None when the
        connection is gone (the client is then closed)."""
        try:
            written = sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._close(client, f"write failed: {exc.strerror or exc}")
            return None
        self.bytes_delivered += written
        return written

    def _write(self, client: Client) -> None:
        """The socket can take more: write as much of the backlog as it takes, in one send."""
        sock = client.sock
        if sock is None or client.closed:
            return
        pending = client.pending
        if pending:
            data = pending[0][0] if len(pending) == 1 else b"".join([chunk for chunk, _ in pending])
            written = self._send(client, sock, data)
            if written is None:
                return
            self._consume(client, written)
            if pending:
                watcher = self._loop.io(sock.fileno(), _WRITE)
                watcher.start(self._on_writable, client)
                client.write_watcher = watcher
                return
            self._maybe_fast(client)
        if client.closing:
            self._close(client, "stream ended", graceful=True)

    def _consume(self, client: Client, written: int) -> None:
        """Account for ``written`` bytes of the backlog: whole chunks go, a cut one shrinks."""
        pending = client.pending
        while pending and written:
            chunk = pending[0]
            size = len(chunk[0])
            if written >= size:
                pending.popleft()
                written -= size
                done = chunk[1]
            else:
                rest = chunk[0][written:]
                left = -(-chunk[1] * len(rest) // size)
                done = chunk[1] - left
                chunk[0], chunk[1] = rest, left
                size = written
                written = 0
            client.pending_bytes -= size
            client.pending_events -= done
            client.sent += done
            self.events_delivered += done

    def _end_after_pending(self, client: Client) -> None:
        """End the response once what is pending is written (now, if nothing is)."""
        client.closing = True
        if not client.pending:
            self._close(client, "stream ended", graceful=True)

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
            client.id, client.remote_addr, client.agent or "*", client.pending_events, client.pending_bytes,
        )
        sock = client.sock
        if sock is not None:
            # Finish a frame cut by a partial write, then say why, if the socket still takes it.
            tail = b""
            if client.pending:
                head = client.pending[0][0]
                end = head.find(b"\n\n")
                tail = head[: end + 2] if end >= 0 else head
            try:
                sock.send(tail + _SLOW_FRAME)
            except OSError:
                pass
        self._close(client, "slow consumer")

    def _close(self, client: Client, reason: str, graceful: bool = False) -> None:
        if client.closed:
            return
        client.closed = True
        self._leave_fast(client)
        self._clients.pop(client.id, None)
        group = client.group
        if group is not None:
            group.special.discard(client)
            if client.agent is not None and not group and self._by_agent.get(client.agent) is group:
                del self._by_agent[client.agent]
        for watcher in (client.read_watcher, client.write_watcher):
            if watcher is not None:
                watcher.stop()
                watcher.close()
        client.read_watcher = client.write_watcher = None
        client.pending.clear()
        client.pending_bytes = client.pending_events = 0
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
        """Send a ``ping`` to every live client: it keeps proxies from timing out an idle
        stream, and a failed write is how a client that vanished without a FIN is noticed."""
        data = sse.frame(json.dumps({"time": rfc3339(time.time())}), "ping")
        live = list(self._all)
        for group in self._by_agent.values():
            live.extend(group)
        for client in live:
            if not client.closed:
                self._deliver(client, data, 0)

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
