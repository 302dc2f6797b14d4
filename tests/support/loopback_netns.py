"""A network namespace with nothing in it but loopback: what runs inside cannot reach the network.

A test that must stay offline puts the program under test in here (``nsenter --net=PATH --``,
see :meth:`LoopbackNetns.command`), and the servers it may talk to listen in here too
(:meth:`LoopbackNetns.listen`). A connection to any other address fails at once with "Network
is unreachable", whatever the program does about proxies or DNS.

How: a short-lived thread calls ``unshare(CLONE_NEWNET)`` (namespaces belong to threads, so
the rest of the test process stays where it is), brings ``lo`` up and opens its
``/proc/thread-self/ns/net``; that open file keeps the namespace alive after the thread ends,
and ``/proc/<pid>/fd/<n>`` names it for ``nsenter`` and for later threads' ``setns``. Sockets
keep the namespace they were made in, so a listener made in here can be served from any thread.

It needs CAP_SYS_ADMIN (root, as in CI) and ``nsenter`` (util-linux); :func:`unavailable_reason`
says why it cannot be had.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH14x"  # struct ifreq: the name, then ifr_flags

T = TypeVar("T")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _in_thread(func: Callable[[], T]) -> T:
    """Run ``func`` in a fresh thread (whose namespaces it may change) and return its result."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(func())
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    thread = threading.Thread(target=run, name="netns", daemon=True)
    thread.start()
    thread.join(10)
    if error:
        raise error[0]
    if not result:
        raise RuntimeError("network namespace set-up did not finish in 10 s")
    return result[0]


def _check(value: int, what: str) -> None:
    if value != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        name = b"lo"
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack(_IFREQ, name, 0)))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, name, flags | _IFF_UP))


class LoopbackNetns:
    """A fresh network namespace with only ``lo``, alive until :meth:`close`."""

    def __init__(self) -> None:
        def create() -> int:
            _check(_libc().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            _loopback_up()
            return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

        self._fd: int | None = _in_thread(create)
        self.path = f"/proc/{os.getpid()}/fd/{self._fd}"

    def listen(self, port: int = 0) -> socket.socket:
        """A TCP listener on 127.0.0.1 inside the namespace (``port`` 0: a free one)."""
        fd = self._require_fd()

        def make() -> socket.socket:
            _check(_libc().setns(fd, CLONE_NEWNET), "setns")
            return socket.create_server(("127.0.0.1", port))

        return _in_thread(make)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace (``nsenter`` execs it: no extra process stays)."""
        self._require_fd()
        return ["nsenter", f"--net={self.path}", "--", *argv]

    def _require_fd(self) -> int:
        if self._fd is None:
            raise RuntimeError("the network namespace is closed")
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LoopbackNetns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unavailable_reason() -> str | None:
    """Why a :class:`LoopbackNetns` cannot be made here, or None when it can."""
    if shutil.which("nsenter") is None:
        return "nsenter (util-linux) is not installed"
    try:
        LoopbackNetns().close()
    except OSError as error:
        return f"cannot make a network namespace ({error}; it needs root or CAP_SYS_ADMIN)"
    return None
