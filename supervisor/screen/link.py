"""The server's end of a screen worker (:mod:`supervisor.screen.worker`): the process, its
pipes, and what is on its way to it. Runs on the gevent hub, never blocking it.

- Starting: ``posix_spawn`` of ``python -m supervisor.screen.worker`` (no fork of the server),
  in a process group of its own (a ^C to the server's terminal is the server's to handle), its
  stdin and stdout two pipes; a libev child watcher sees it end (gevent reaps every child).
- Writing (:meth:`WorkerLink.send`): one non-blocking write of the frame; what the pipe does
  not take is queued and written by an I/O watcher when the pipe can take more. No greenlet.
  :attr:`WorkerLink.queued` is what waits; the caller bounds it (``LiveScreen``: the program's
  reader waits, as a slow terminal makes a program wait).
- Reading: an I/O watcher reads the worker's frames and hands them on (``on_update``,
  ``on_reply``).
- Ending: :meth:`close` closes the worker's stdin, and it exits; one that does not within
  :data:`CLOSE_KILL_S` is killed. A worker that ends without being asked (crashed, killed) is
  ``on_death(reason)``'s; so is one :meth:`kill`-ed for hanging.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gevent.event import Event
from gevent.hub import get_hub

from supervisor.screen.protocol import (
    DATA,
    QUERIES,
    REPLY,
    RESIZE,
    RESIZE_BODY,
    SYNC,
    SYNCED,
    TOKEN,
    UPDATE,
    FrameReader,
    frame,
)

__all__ = ["CLOSE_KILL_S", "WorkerLink"]

log = logging.getLogger(__name__)

#: A worker still alive this long after its stdin was closed is killed.
CLOSE_KILL_S = 2.0
_READ, _WRITE = 1, 2
#: Where ``supervisor`` is, for the worker's ``-m`` (the server may run from any directory).
_ROOT = str(Path(__file__).resolve().parents[2])


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _ROOT + (os.pathsep + path if path else "")
    return env


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


class WorkerLink:
    """One screen worker; see the module docstring."""

    def __init__(self, cols: int, rows: int, gen: int, *, on_update: Callable[[dict[str, Any]], None],
                 on_reply: Callable[[bytes], None], on_death: Callable[[str], None]) -> None:
        self._on_update, self._on_reply, self._on_death = on_update, on_reply, on_death
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        argv = [sys.executable, "-m", "supervisor.screen.worker", str(cols), str(rows), str(gen)]
        try:
            self.pid = os.posix_spawn(sys.executable, argv, _worker_env(), setpgroup=0, file_actions=[
                (os.POSIX_SPAWN_DUP2, to_worker_r, 0), (os.POSIX_SPAWN_DUP2, from_worker_w, 1)])
        except OSError:
            for fd in (to_worker_r, to_worker_w, from_worker_r, from_worker_w):
                os.close(fd)
            raise
        loop = get_hub().loop
        self._child = loop.child(self.pid, False)
        self._child.start(self._exited)
        os.close(to_worker_r)
        os.close(from_worker_w)
        os.set_blocking(to_worker_w, False)
        os.set_blocking(from_worker_r, False)
        self._in: int | None = to_worker_w
        self._out: int | None = from_worker_r
        self._reader = FrameReader()
        self._read_watcher: Any = loop.io(from_worker_r, _READ)
        self._read_watcher.start(self._readable)
        self._write_watcher: Any = None
        self._queue: deque[memoryview] = deque()
        #: Bytes waiting to go into the pipe.
        self.queued = 0
        self._drained = Event()
        self._drained.set()
        self._low_water = 0  # what wait_queued waits for
        self._token = 0
        self._synced = 0
        self._synced_event = Event()
        self._kill_timer: Any = None
        self._ended = Event()
        self.alive = True  # the process has not been seen to end
        self.closing = False  # ended on purpose: its end is nobody's news

    # -- to the worker ---------------------------------------------------------------------

    def send(self, kind: bytes, payload: bytes) -> None:
        fd = self._in
        if fd is None:
            return
        data = memoryview(frame(kind, payload))
        if not self._queue:
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0
            except OSError:  # the worker is gone: its death is on its way
                self._close_in()
                return
            data = data[written:]
            if not data:
                return
        self._queue.append(data)
        self.queued += len(data)
        self._drained.clear()
        if self._write_watcher is None:
            self._write_watcher = get_hub().loop.io(fd, _WRITE)
            self._write_watcher.start(self._writable)

    def feed(self, data: bytes, answer: bool) -> None:
        self.send(QUERIES if answer else DATA, data)

    def resize(self, cols: int, rows: int, gen: int) -> None:
        self.send(RESIZE, RESIZE_BODY.pack(min(cols, 0xFFFF), min(rows, 0xFFFF), gen))

    def wait_queued(self, most: int, timeout: float) -> bool:
        """Wait (this greenlet only) until at most ``most`` bytes are queued; False if it took
        longer than ``timeout`` (the worker does not read: it hangs)."""
        if self.queued <= most:
            return True
        self._low_water = most
        self._drained.clear()
        return bool(self._drained.wait(timeout)) or self.queued <= most

    def sync(self, timeout: float) -> bool:
        """Wait (this greenlet only) until the worker has applied everything sent so far and
        its update has been handed on; False if it did not answer within ``timeout``."""
        if self._in is None or not self.alive:
            return False
        self._token += 1
        token = self._token
        self.send(SYNC, TOKEN.pack(token))
        deadline = time.monotonic() + timeout
        while self._synced < token and self.alive:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._synced_event.clear()
            self._synced_event.wait(remaining)
        return self._synced >= token

    def _writable(self) -> None:
        fd = self._in
        queue = self._queue
        while queue and fd is not None:
            data = queue[0]
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                break
            except OSError:
                self._close_in()
                return
            self.queued -= written
            if written < len(data):
                queue[0] = data[written:]
                break
            queue.popleft()
        if self.queued <= self._low_water or not queue:
            self._drained.set()
        if not queue:
            self._stop_writing()

    def _stop_writing(self) -> None:
        if self._write_watcher is not None:
            self._write_watcher.stop()
            self._write_watcher.close()
            self._write_watcher = None

    def _close_in(self) -> None:
        self._stop_writing()
        self._queue.clear()
        self.queued = 0
        self._drained.set()
        if self._in is not None:
            os.close(self._in)
            self._in = None

    # -- from the worker -------------------------------------------------------------------

    def _readable(self) -> None:
        fd = self._out
        if fd is None:
            return
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # its stdout closed: it is ending (on purpose or not); make sure
            self._close_out()
            if not self.closing:
                self.kill()
            return
        try:
            frames = self._reader.feed(data)
        except ValueError as exc:
            log.warning("screen worker %d: %s", self.pid, exc)
            self.kill()
            return
        for kind, payload in frames:
            if self._out is None:
                return  # closed by a callback
            try:
                if kind == UPDATE:
                    self._on_update(json.loads(payload))
                elif kind == REPLY:
                    self._on_reply(payload)
                elif kind == SYNCED:
                    self._synced = max(self._synced, TOKEN.unpack(payload)[0])
                    self._synced_event.set()
            except Exception:  # noqa: BLE001 - a bad frame or a callback's bug must not stop the hub
                log.exception("screen worker %d: handling its frame failed", self.pid)

    def _close_out(self) -> None:
        if self._read_watcher is not None:
            self._read_watcher.stop()
            self._read_watcher.close()
            self._read_watcher = None
        if self._out is not None:
            os.close(self._out)
            self._out = None

    # -- ending ----------------------------------------------------------------------------

    def close(self, wait: bool = False) -> None:
        """End the worker on purpose (the run is over): close its stdin; it exits. With
        ``wait``, this greenlet waits until it has (and been reaped); one still there after
        :data:`CLOSE_KILL_S` is killed."""
        if not self.closing:
            self.closing = True
            self._close_in()
            self._close_out()
            if self.alive:
                self._kill_timer = get_hub().loop.timer(CLOSE_KILL_S)
                self._kill_timer.start(self._kill_now)
        if wait and self.alive:
            self._ended.wait(CLOSE_KILL_S + 1.0)

    def kill(self) -> None:
        """The worker hangs (or talks nonsense): SIGKILL; its death is ``on_death``'s."""
        if self.alive:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _kill_now(self) -> None:
        if self._kill_timer is not None:
            self._kill_timer.close()
            self._kill_timer = None
        self.kill()

    def _exited(self) -> None:
        child = self._child
        child.stop()
        self.alive = False
        self._ended.set()
        self._synced_event.set()
        self._drained.set()
        if self._kill_timer is not None:
            self._kill_timer.stop()
            self._kill_timer.close()
            self._kill_timer = None
        closing = self.closing
        self.closing = True
        self._close_in()
        self._close_out()
        if not closing:
            reason = describe_status(child.rstatus)
            log.warning("screen worker %d %s", self.pid, reason)
            try:
                self._on_death(reason)
            except Exception:  # noqa: BLE001 - must not stop the hub
                log.exception("handling the end of screen worker %d failed", self.pid)
