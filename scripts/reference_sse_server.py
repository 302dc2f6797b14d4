#!/usr/bin/env python3
"""The simplest SSE fan-out this machine can run: the yardstick for ``bench_sse.py --reference``.

Not part of agent-supervisor. A gevent server that accepts SSE clients and, on an in-process
timer, sends each of them the same ``tick n=<n> ts=<ns>`` event (framed like ours) with one
non-blocking ``send`` per client, in one loop: no PTY, no agent, no history, no queues, no
resume. A client whose socket is full is simply cut off. With ``--pty`` the events come from
a real agent instead (``tick_agent.py`` under a pseudo-terminal, each chunk of lines read is
sent as one write): the floor for a server that relays a real agent's output. What agent-supervisor adds on top of
this is the cost of being a real supervisor; benchmark runs that put the two side by side on the
same machine at the same time tell that cost apart from the machine's own noise (on a shared
VM, host CPU steal moves the p99 of either by tens of milliseconds from one minute to the next).

    scripts/reference_sse_server.py --rate 100 --size 120         # prints "serving on http://..."
    scripts/reference_sse_server.py --rate 100 --size 120 --pty   # the same lines through a PTY
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

import gevent
from gevent.server import StreamServer
from gevent.socket import wait_read
from ptyprocess import PtyProcess

TICK_AGENT = Path(__file__).resolve().parent / "tick_agent.py"

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\nretry: 3000\n\n"
)


class Reference:
    def __init__(self, rate: float, size: int) -> None:
        self.rate = rate
        self.size = size
        self.clients: list[socket.socket] = []

    def accept(self, gsock: socket.socket, address: tuple[str, int]) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = gsock.recv(4096)
            if not chunk:
                gsock.close()
                return
            request += chunk
        gsock.sendall(HEAD)
        gsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = socket.socket(fileno=gsock.detach())
        sock.setblocking(False)
        self.clients.append(sock)

    def tick_forever(self) -> None:
        n = 0
        start = time.monotonic()
        while True:
            n += 1
            wait = start + n / self.rate - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            self.publish(self.frame(n))

    def relay_forever(self) -> None:
        """Publish the lines of a real tick agent, read from its PTY: one write per chunk read."""
        agent = PtyProcess.spawn([sys.executable, str(TICK_AGENT), "--rate", str(self.rate), "--size", str(self.size)])
        os.set_blocking(agent.fd, False)
        n, rest = 0, b""
        while True:
            wait_read(agent.fd)
            try:
                data = os.read(agent.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:  # EIO: the agent is gone
                return
            *lines, rest = (rest + data).split(b"\n")
            frames = []
            for line in lines:
                n += 1
                frames.append(self.frame(n, line.rstrip(b"\r").decode()))
            if frames:
                self.publish(b"".join(frames))

    def frame(self, n: int, line: str | None = None) -> bytes:
        if line is None:
            head = f"tick n={n} ts={time.time_ns()} pad="
            line = head + "." * max(0, self.size - len(head))
        envelope = {"id": n, "type": "log", "timestamp": "", "agent_name": "ticker",
                    "data": {"line": line, "line_num": n, "stream": "stdout", "run": 1}}
        return f"id: {n}\nevent: log\ndata: {json.dumps(envelope, separators=(',', ':'))}\n\n".encode()

    def publish(self, data: bytes) -> None:
        gone = []
        for sock in self.clients:
            try:
                if sock.send(data) != len(data):
                    gone.append(sock)
            except OSError:
                gone.append(sock)
        for sock in gone:
            self.clients.remove(sock)
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--size", type=int, default=120, help="line length in bytes")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pty", action="store_true", help="events from tick_agent.py under a PTY, not a timer")
    args = parser.parse_args()
    if args.rate <= 0:
        parser.error("--rate must be positive")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one fd per client
    reference = Reference(args.rate, args.size)
    server = StreamServer(("127.0.0.1", args.port), reference.accept, backlog=4096)
    server.start()
    print(f"serving on http://127.0.0.1:{server.server_port}", flush=True)
    gevent.spawn(reference.relay_forever if args.pty else reference.tick_forever).join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
