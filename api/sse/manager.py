"""The SSE manager: fans every event out to every client that wants it, never waiting for one.

How a stream goes (see :meth:`SSEManager.serve`):

1. In the request's own greenlet (state ``REPLAYING``): write the response head, ``retry:``,
   ``connected``, and the history after the client's ``Last-Event-ID``, in batches from a
   replay cursor, with ordinary cooperative writes (a slow reader only slows its own greenlet)
   and a :func:`~supervisor.replay.pause` between batches (a fast reader on loopback never
   makes a send wait, and a replay of 250,000 events must not hold the hub: each batch is a
   bounded read). When a batch comes back empty the client is caught up, and in the same breath
   (the cursor promises not to yield after finding that) it is registered as live. Events the
   bus has not handed over yet but that the replay already sent are skipped by id. The greenlet
   then ends. Only committed events are replayed or published: they are in history already.
2. Live, a client is a plain non-blocking socket and a libev read watcher (to notice a hang-up
   at once). Publishing is O(1) whatever the number of clients: the event joins the outbox of
   its agent's stream and of the all-agents stream. Once per hub loop iteration a callback
   frames and joins each outbox once and hands the same bytes to each of its clients in one
   ``send`` (:meth:`~api.sse.fanout.Group.send_fast`). No greenlet and no thread per client.
3. What a socket does not take waits in the client's :class:`~api.sse.backlog.Backlog`
   (``BACKLOGGED``); a backlog past ``queue_size`` events or ``queue_bytes`` bytes whose socket
   has taken nothing for ``queue_stall_s`` means the client does not keep up: it is dropped
   (after a last-chance ``event: error`` ``slow_consumer`` if its socket still takes it). A
   burst a fast reader takes is not that. It reconnects with its ``Last-Event-ID`` and loses
   nothing.

All of this runs on the gevent hub's thread; hub callbacks here never block or switch.
"""
from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent.hub import get_hub

from supervisor import events
from supervisor.bus import Subscription
from supervisor.eventlog import EventLogBackend
from supervisor.events import Event, rfc3339
from supervisor.replay import Pacer, pause

from . import frames, handover
from .backlog import Backlog, BacklogFull, unsent_events
from .connection import BACKLOGGED, CLOSED, CLOSING, LIVE, REPLAYING, Connection
from .counters import StreamCounters
from .fanout import Group

log = logging.getLogger(__name__)

#: Events read from history per batch while replaying.
REPLAY_BATCH = 250
#: How long a replay that the agent outruns works between two yields (seconds): issue 12's
#: "no replay holds the hub for more than about 10 ms at a time".
OUTRUN_HOLD_S = 0.008

_SLOW_FRAME = frames.named("error", {"reason": "slow_consumer"})
_READ, _WRITE = 1, 2


class SSEManager:
    """Every SSE client of one server, and the counters ``/api/sse/stats`` shows.

    ``is_done(agent)`` tells whether an agent will produce nothing more (so that its stream ends
    after the replay). :meth:`start` subscribes to the event log; :meth:`close` unsubscribes
    and ends every stream.
    """

    def __init__(
        self,
        eventlog: EventLogBackend,
        *,
        is_done: Callable[[str], bool],
        queue_size: int = 100,
        queue_bytes: int = 1 << 20,
        queue_stall_s: float = 0.5,
        keepalive_s: float = 15.0,
        retry_ms: int = 3000,
        max_clients: int = 10_000,
        max_clients_per_agent: int = 5_000,
    ) -> None:
        self.eventlog = eventlog
        self.is_done = is_done
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.queue_stall_s = queue_stall_s
        self.keepalive_s = keepalive_s
        self.retry_ms = retry_ms
        self.max_clients = max_clients
        self.max_clients_per_agent = max_clients_per_agent
        self.counters = StreamCounters()
        self._by_agent: dict[str, Group] = {}  # only agents with clients
        self._all = Group()
        self._clients: dict[str, Connection] = {}  # live and replaying
        self._outbox: dict[str | None, list[Event]] = {}
        self._flush_scheduled = False
        self._next_client = 0
        self._loop = get_hub().loop
        self._pinger: gevent.Greenlet[..., Any] | None = None
        self._subscription: Subscription | None = None
        # The newest id the bus has handed over: a client that replayed further than this will
        # still be handed the events in between, and must skip them.
        self._received = 0
        #: All replays together use at most half of the hub's time (see supervisor.replay).
        self._pacer = Pacer()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._subscription is not None:
            return
        self._received = self.eventlog.last_id()
        self._subscription = self.eventlog.subscribe(self._on_event)
        resyncs = getattr(self.eventlog, "resyncs", None)  # a backend in many nodes has them
        if resyncs is not None:
            resyncs.connect(self.resync, sender=self.eventlog)
        self._pinger = gevent.spawn(self._ping_forever)

    def close(self) -> None:
        """Leave the bus and end every stream (the server is shutting down). Idempotent."""
        if self._subscription is not None:
            self._subscription.close()
            resyncs = getattr(self.eventlog, "resyncs", None)
            if resyncs is not None:
                resyncs.disconnect(self.resync)
        if self._pinger is not None:
            self._pinger.kill(block=False)
            self._pinger = None
        self._flush()
        for client in list(self._clients.values()):
            if client.sock is not None and client.backlog:
                self._write(client)  # a last non-blocking try
            self._close(client, "server shutting down", graceful=True)

    def resync(self, sender: object = None) -> None:
        """The event log cannot vouch for what it sent next (the Redis backend's copy started
        again after a gap, a new epoch or a hole): end every live stream once what it was sent
        is written, so that its client resumes with ``Last-Event-ID`` into an honest ``reset``.
        The embedded backend never calls it."""
        self._flush()
        for client in list(self._clients.values()):
            if client.state is not REPLAYING:
                self._end_after_backlog(client)

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

    @property
    def started_at(self) -> float:
        return self.counters.started_at

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
        a client that went away, a server shutting down).
        """
        self._next_client += 1
        client = Connection(f"c{self._next_client}", agent, remote_addr, plain,
                            Backlog(self.queue_size, self.queue_bytes, self.queue_stall_s))
        self._clients[client.id] = client
        self.counters.clients_connected_total += 1
        try:
            connected = {"client_id": client.id, "agent_name": agent, "last_event_id": last_id}
            handover.open_response(gsock, extra_headers,
                                   frames.retry(self.retry_ms) + frames.named("connected", connected))
            caught_up = self._replay(client, gsock, agent, last_id or 0, reset_check=last_id is not None)
            if caught_up is not None and client.state is REPLAYING:
                self._go_live(client, handover.take_socket(gsock), caught_up)
                return
        except OSError as exc:
            log.debug("client %s went away during replay: %s", client.id, exc)
        if client.state is REPLAYING:
            client.change_state(CLOSED)
        self._clients.pop(client.id, None)
        gsock.close()

    def _replay(self, client: Connection, gsock: Any, agent: str | None, after: int, reset_check: bool) -> int | None:
        """Send history after ``after``. Returns the last id sent once caught up (the caller
        registers the client without yielding first), or None when the stream is over (the
        agent is done and everything was sent)."""
        frame_of = frames.plain_frame if client.plain else frames.event_frame
        chunks = []
        started = time.monotonic()
        # Pacing (below): the live edge at the last yield, the events sent since, and whether
        # the agent outran the replay over the last yield.
        edge, since, outrun = self.eventlog.last_id(agent), 0, False
        cursor = self.eventlog.replay(after, agent)
        batch = cursor.take(REPLAY_BATCH)
        if cursor.reset:
            # The replay starts again from what is kept: an id from the future is no position.
            after = min(after, self.eventlog.last_id())
            if reset_check:
                chunks.append(frames.named("reset", {"missed": cursor.missed,
                                                     "first_available": batch[0].id if batch else None}))
        counters = self.counters
        while True:
            sent = 0
            for event in batch:
                if agent is None or event.type not in (events.AGENT_ADDED, events.AGENT_REMOVED):
                    chunks.append(frame_of(event))
                    sent += 1
            if chunks:
                data = b"".join(chunks)
                gsock.sendall(data)  # may yield: live events keep accumulating in history meanwhile
                client.sent += sent
                counters.events_delivered += sent
                counters.bytes_delivered += len(data)
                chunks = []
            if not batch:
                return None if agent is not None and self.is_done(agent) else after
            after = batch[-1].id
            since += len(batch)
            # The hub is everyone's: live streams go first, between two batches, and all replays
            # together get half of it (a send that waited on a slow reader counts as work: that
            # reader gets no faster anyway), as long as a replay gains on the live edge: the
            # agent printed less than half of what the replay sent between two of its yields.
            # One the agent outruns (a flood: 10 clients catching up on an agent printing
            # 40,000 lines/s) would never catch up if paced or paused after every batch: it
            # yields only every OUTRUN_HOLD_S, so that it holds the agent back until it is live.
            if not (outrun and time.monotonic() - started < OUTRUN_HOLD_S):
                newest = self.eventlog.last_id(agent)
                outrun = (newest - edge) * 2 > since
                if outrun:
                    pause()
                else:
                    self._pacer.rest(time.monotonic() - started)
                edge, since, started = newest, 0, time.monotonic()
            batch = cursor.take(REPLAY_BATCH)

    def _go_live(self, client: Connection, sock: socket.socket, last_id: int) -> None:
        client.sock = sock
        client.change_state(LIVE)
        # The replay went up to last_id. Events up to there that are still in the outbox, or
        # that the bus has not handed over yet, were sent already: skip them.
        if self._outbox.get(client.agent) or self._received < last_id:
            client.skip_until = last_id
        group = self._all if client.agent is None else self._by_agent.setdefault(client.agent, Group())
        group.join(client)
        group.promote(client)
        watcher = self._loop.io(sock.fileno(), _READ)
        watcher.start(self._on_readable, client)
        client.read_watcher = watcher

    # -- publishing ------------------------------------------------------------------------

    def _on_event(self, sender: object, event: Event) -> None:
        """Receiver of every event of the log: O(1), whatever the number of clients. The event
        joins the outbox of its agent's stream and of the all-agents stream; one flush per hub
        loop iteration then writes each outbox to its clients."""
        self._received = event.id
        kind = event.type
        name = event.agent_name
        if kind in (events.AGENT_ADDED, events.AGENT_REMOVED):
            if self._all:
                self._enqueue(None, event)
            group = self._by_agent.get(name)
            if kind == events.AGENT_REMOVED and group:
                for client in tuple(group):
                    self._end_after_backlog(client)
            return
        if name in self._by_agent:
            self._enqueue(name, event)
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
        # is framed and joined once, then handed to each of its clients in one send. What did
        # not go as planned in the hot loop (a short write, an error) is dealt with after it.
        self._flush_scheduled = False
        started = time.perf_counter()  # the flush's duration, for /metrics: nothing per client
        try:
            self._flush_outbox()
        finally:
            self.counters.flush_times.observe(time.perf_counter() - started)

    def _flush_outbox(self) -> None:
        outbox, self._outbox = self._outbox, {}
        counters = self.counters
        for key, batch in outbox.items():
            group = self._all if key is None else self._by_agent.get(key)
            if not group:
                continue
            payload = b"".join([frames.event_frame(e) for e in batch])
            size = len(payload)
            count = len(batch)
            special = tuple(group.special)  # before the fast ones that fall out of the loop join
            fast = group.fast
            short = group.send_fast(payload)
            whole = len(fast) - len(short)
            for sock, written, error in short:
                # Both ways out take the client from the fast path, counted up to this batch.
                client = fast[sock]
                if error is not None:
                    self._close(client, f"write failed: {error.strerror or error}")
                else:
                    counters.bytes_delivered += written
                    self._keep_rest(client, payload, count, written)
            group.fast_events += count
            counters.events_delivered += whole * count
            counters.bytes_delivered += whole * size
            plain: list[bytes] = []  # the strip_ansi payload, framed once when a client wants it
            for client in special:
                if client.state is not CLOSED:
                    self._deliver_special(client, batch, payload, plain)
            if key is not None and any(e.type == events.COMPLETE for e in batch):
                for client in tuple(group):
                    if client.state is not CLOSED:
                        self._end_after_backlog(client)

    def _deliver_special(self, client: Connection, batch: list[Event], payload: bytes, plain: list[bytes]) -> None:
        """The flush for a client with a backlog, a replay overlap or ``strip_ansi``. ``plain``
        caches the batch's ``strip_ansi`` payload across the clients of one flush."""
        data, count = payload, len(batch)
        if client.skip_until or client.plain:
            fresh = [e for e in batch if e.id > client.skip_until]
            if fresh:
                client.skip_until = 0  # the batch went past the replay: nothing more to skip
            if len(fresh) != count:
                frame_of = frames.plain_frame if client.plain else frames.event_frame
                data = b"".join([frame_of(e) for e in fresh])
            elif client.plain:
                if not plain:
                    plain.append(b"".join([frames.plain_frame(e) for e in batch]))
                data = plain[0]
            count = len(fresh)
        if count:
            self._deliver(client, data, count)
        if client.group is not None:
            client.group.promote(client)

    def _deliver(self, client: Connection, data: bytes, count: int) -> None:
        """Hand ``data`` (``count`` events) to the client's socket, or queue it behind what the
        socket has not taken yet. A backlog past its bounds drops the client."""
        if client.backlog:
            try:
                client.backlog.push(data, count, self._loop.now())
            except BacklogFull:
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
            self.counters.events_delivered += count
            return
        self._keep_rest(client, data, count, written)

    def _keep_rest(self, client: Connection, data: bytes, count: int, written: int) -> None:
        """The socket took ``written`` bytes of ``data`` (``count`` events): the rest becomes the
        client's backlog, written when the socket can take more (or the client is dropped)."""
        group = client.group
        if group is not None:
            group.demote(client)
        sock = client.sock
        assert sock is not None
        rest = data[written:]
        unsent = unsent_events(count, len(data), len(rest))
        client.sent += count - unsent
        self.counters.events_delivered += count - unsent
        if client.state is LIVE:
            client.change_state(BACKLOGGED)
        try:
            client.backlog.push(rest, unsent, self._loop.now())
        except BacklogFull:
            self._drop_slow(client, unfinished=rest)
            return
        self._wait_writable(client, sock)

    def _wait_writable(self, client: Connection, sock: socket.socket) -> None:
        watcher = self._loop.io(sock.fileno(), _WRITE)
        watcher.start(self._on_writable, client)
        client.write_watcher = watcher

    def _send(self, client: Connection, sock: socket.socket, data: bytes) -> int | None:
        """One non-blocking send: bytes taken (0 when the socket is full), or None when the
        connection is gone (the client is then closed)."""
        try:
            written = sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._close(client, f"write failed: {exc.strerror or exc}")
            return None
        self.counters.bytes_delivered += written
        return written

    def _write(self, client: Connection) -> None:
        """The socket can take more: write as much of the backlog as it takes, in one send."""
        sock = client.sock
        if sock is None or client.state is CLOSED:
            return
        backlog = client.backlog
        if backlog:
            written = self._send(client, sock, backlog.pending())
            if written is None:
                return
            done = backlog.consume(written, self._loop.now())
            client.sent += done
            self.counters.events_delivered += done
            if backlog:
                self._wait_writable(client, sock)
                return
            if client.state is BACKLOGGED:
                client.change_state(LIVE)
                if client.group is not None:
                    client.group.promote(client)
        if client.state is CLOSING:
            self._close(client, "stream ended", graceful=True)

    def _end_after_backlog(self, client: Connection) -> None:
        """End the response once the backlog is written (now, if it is empty)."""
        if client.state is CLOSING:
            return
        if client.backlog:
            client.change_state(CLOSING)
        else:
            self._close(client, "stream ended", graceful=True)

    def _on_writable(self, client: Connection) -> None:
        watcher, client.write_watcher = client.write_watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()
        self._write(client)

    def _on_readable(self, client: Connection) -> None:
        sock = client.sock
        if sock is None:
            return
        reason = handover.eof_reason(sock)
        if reason is not None:
            self._close(client, reason)

    def _drop_slow(self, client: Connection, unfinished: bytes = b"") -> None:
        """The backlog is full: say why if the socket still takes it, and close. ``unfinished``
        is the rest of a batch whose start was written, when it is not in the backlog."""
        self.counters.clients_dropped_slow += 1
        backlog = client.backlog
        log.info(
            "dropping slow client %s (%s, agent %s): %d events / %d bytes queued",
            client.id, client.remote_addr, client.agent or "*", backlog.events, backlog.bytes,
        )
        sock = client.sock
        if sock is not None:
            # Finish a frame cut by a partial write, then say why, if the socket still takes it.
            if backlog:
                tail = backlog.unfinished_frame()
            else:
                end = unfinished.find(b"\n\n")
                tail = unfinished[: end + 2] if end >= 0 else unfinished
            try:
                sock.send(tail + _SLOW_FRAME)
            except OSError:
                pass
        self._close(client, "slow consumer")

    def _close(self, client: Connection, reason: str, graceful: bool = False) -> None:
        if client.state is CLOSED:
            return
        group = client.group
        if group is not None:
            group.demote(client)
        client.change_state(CLOSED)
        self._clients.pop(client.id, None)
        if group is not None:
            group.leave(client)
            if client.agent is not None and not group and self._by_agent.get(client.agent) is group:
                del self._by_agent[client.agent]
        for watcher in (client.read_watcher, client.write_watcher):
            if watcher is not None:
                watcher.stop()
                watcher.close()
        client.read_watcher = client.write_watcher = None
        client.backlog.clear()
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
        data = frames.named("ping", {"time": rfc3339(time.time())})
        live = list(self._all)
        for group in self._by_agent.values():
            live.extend(group)
        for client in live:
            if client.state is not CLOSED:
                self._deliver(client, data, 0)

    # -- monitoring ------------------------------------------------------------------------

    def stats(self, agent_names: Iterable[str]) -> dict[str, Any]:
        per_agent = {name: len(self._by_agent.get(name, ())) for name in agent_names}
        counters = self.counters
        return {
            "total_agents": len(per_agent),
            "total_clients": len(self._clients),
            "agents": per_agent,
            "all_stream_clients": len(self._all),
            "events_published": self.eventlog.events_published,
            "events_delivered": counters.events_delivered,
            "bytes_delivered": counters.bytes_delivered,
            "clients_dropped_slow": counters.clients_dropped_slow,
            "clients_connected_total": counters.clients_connected_total,
            "uptime_s": counters.uptime_s,
            "clients": [c.describe() for c in self._clients.values()],
        }
