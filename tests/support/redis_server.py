"""A real redis-server for tests: a process of its own, its own data directory, stopped by pid.

Each :class:`RedisServer` listens on a unix socket (the default URL; in a short temporary
directory of its own, since a socket path has at most 107 bytes) and on a free loopback TCP port (``tcp_url``, for what only TCP exercises: name resolution, connect
timeouts). Nothing is persisted (``save ""``, ``appendonly no``) unless a test asks for it with
``stop(save=True)`` or :meth:`snapshot`, which write ``dump.rdb`` for the next :meth:`start` to
load. A server can be restarted (empty by default: "Redis restarted empty"), killed (it comes back
with its last snapshot, if any: "Redis went back in time"), paused with SIGSTOP (a server that
accepts connections and never answers) and resumed.

Readiness is a raw ``PING`` on the socket with a deadline, not a sleep; this module speaks RESP by
hand so that the fixture does not depend on the client it is used to test.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: How long a start or a stop may take before the test fails.
DEADLINE_S = 10.0


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the test process dies (a suite killed for
    hanging must not leave servers behind, paused ones least of all)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def unavailable_reason() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (Debian package redis-server; scripts/test.sh installs it as root)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis extra is not installed (pip install -e '.[test]')"
    return None


def require() -> None:
    """Skip the calling test with the reason when redis-server or the client is missing; under
    ``CI=true`` fail it instead (CI installs both: a missing one is a broken setup)."""
    import pytest  # here, so that scripts/bench_redis.py can use this module without pytest

    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a real redis-server: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    """A loopback port that was free a moment ago (redis-server cannot pick one itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server under ``directory`` (its config, socket, log and dump live there)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._socket_dir = Path(tempfile.mkdtemp(prefix="as-redis-"))
        self.socket_path = self._socket_dir / "redis.sock"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None, "redis-server is not running"
        return self.process.pid

    def _write_config(self) -> Path:
        config = self.directory / "redis.conf"
        config.write_text("\n".join([
            f"port {self.port}",
            "bind 127.0.0.1",
            f"unixsocket {self.socket_path}",
            "unixsocketperm 700",
            f"dir {self.directory}",
            "dbfilename dump.rdb",
            'save ""',
            "appendonly no",
            "daemonize no",
            f"logfile {self.directory / 'redis.log'}",
            "protected-mode yes",
            "databases 1",
            "hz 50",  # SIGTERM is acted on by the server's timer: 20 ms rather than 100 ms
            "",
        ]))
        return config

    def start(self) -> RedisServer:
        """Start redis-server and wait until it answers ``PING``; fail with its log if it does not."""
        assert self.process is None, "already running"
        self.socket_path.unlink(missing_ok=True)
        for _attempt in range(3):
            self.process = subprocess.Popen(
                ["redis-server", str(self._write_config())], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory,
                preexec_fn=_die_with_parent,
            )
            if self._wait_ready():
                self.starts += 1
                return self
            self._kill()
            self.port = free_port()  # the likely cause: someone took the port in between
        raise AssertionError(f"redis-server did not answer PING within {DEADLINE_S} s; log:\n{self.log()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            if self.ping(timeout=0.5):
                return True
            time.sleep(0.01)
        return False

    def ping(self, timeout: float = 1.0) -> bool:
        """True when the server answers ``PING`` on its unix socket within ``timeout``."""
        return self.command(b"PING", timeout=timeout) == b"+PONG"

    def command(self, line: bytes, timeout: float = 1.0) -> bytes | None:
        """One inline command; the first line of the reply, or None when there is none in time."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(str(self.socket_path))
                s.sendall(line + b"\r\n")
                reply = b""
                while not reply.endswith(b"\r\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
                return reply.split(b"\r\n", 1)[0]
        except OSError:
            return None

    def stop(self, save: bool = False) -> None:
        """Stop the server: with ``save``, by ``SHUTDOWN SAVE`` (the next start loads the data),
        else by SIGTERM to its pid (nothing is kept). SIGKILL if it is not gone in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.resume()  # a paused server cannot act on SIGTERM
            if save:
                self.command(b"SHUTDOWN SAVE", timeout=DEADLINE_S)
            else:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                self._kill()
                raise AssertionError(f"redis-server {self.pid} ignored SIGTERM for {DEADLINE_S} s") from None
        self.process = None
        if not save:
            (self.directory / "dump.rdb").unlink(missing_ok=True)

    def restart(self, keep_data: bool = False) -> RedisServer:
        """Stop and start again on the same socket and port: empty, or with its data."""
        self.stop(save=keep_data)
        return self.start()

    def snapshot(self) -> None:
        """``SAVE``: write ``dump.rdb`` now (what a later :meth:`kill` and start come back to)."""
        reply = self.command(b"SAVE", timeout=DEADLINE_S)
        assert reply == b"+OK", f"SAVE answered {reply!r}"

    def kill(self) -> None:
        """SIGKILL, as in a crash: what is not in a snapshot is gone."""
        self._kill()

    def _kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=DEADLINE_S)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, the server answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its socket directory."""
        self.stop()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.directory / "redis.log").read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"
