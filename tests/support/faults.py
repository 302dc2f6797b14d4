"""Storage faults on demand: a small real tmpfs that fills up, and injected errors.

- :func:`small_tmpfs` mounts a tmpfs of a few megabytes (root only): a real ``ENOSPC`` from the
  kernel. Where mounting is not allowed the test is skipped, saying why; under ``CI=true`` (which
  runs as root) that is a failure instead, so it never goes silently untested.
- :class:`Faults` wraps the functions of :mod:`supervisor.files`, through which every write of
  the data directory goes, to fail chosen calls with a chosen ``errno`` (``EIO`` has no other
  safe way to happen on demand), and records every call (the steps of a run, for a test that
  fails each step in turn). Appends are told apart by the path behind their descriptor.
"""
from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from supervisor import files


@contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the block; unmounted after it, whatever
    happens (lazily if something still holds a file there)."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                            capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        why = f"cannot mount a {size} tmpfs (needs root): {result.stderr.strip() or result.returncode}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def fill(path: Path, leave: int, name: str = "ballast") -> Path:
    """A ballast file in ``path``'s file system that leaves about ``leave`` bytes free (0: none,
    up to the last byte the kernel gives)."""
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize
    ballast = path / name
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        remaining = max(0, free - leave) if leave else 1 << 40
        block = b"\0" * (64 << 10)
        while remaining > 0:
            try:
                remaining -= os.write(fd, block[: min(len(block), remaining)])
            except OSError:  # ENOSPC: as full as it gets
                break
    finally:
        os.close(fd)
    return ballast


@dataclass
class Call:
    """One call of :mod:`supervisor.files`: its name and the path it touched."""

    name: str
    path: str


@dataclass
class Faults:
    """Every call of the wrapped functions is recorded in :attr:`calls`; one for which
    ``failing(call)`` is true raises ``OSError(error)`` instead of writing."""

    error: int = errno.EIO
    failing: Callable[[Call], bool] = lambda call: False
    calls: list[Call] = field(default_factory=list)

    def _check(self, name: str, path: str) -> None:
        call = Call(name, path)
        self.calls.append(call)
        if self.failing(call):
            raise OSError(self.error, os.strerror(self.error), path)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Faults:
        real_append, real_replace, real_open = files.append, files.replace, files.open_append
        real_fsync = files.fsync

        def append(fd: int, data: bytes) -> None:
            try:
                self._check("append", os.readlink(f"/proc/self/fd/{fd}"))
            except OSError as exc:
                raise files.PartialWrite(exc, 0) from exc
            real_append(fd, data)

        def replace(path: Path, data: bytes, durable: bool = False, in_thread: bool = False) -> None:
            self._check("replace", str(path))
            real_replace(path, data, durable, in_thread)

        def open_append(path: Path) -> int:
            self._check("open", str(path))
            return real_open(path)

        def fsync(fd: int) -> None:
            self._check("fsync", os.readlink(f"/proc/self/fd/{fd}"))
            real_fsync(fd)

        for name, wrapper in (("append", append), ("replace", replace), ("open_append", open_append),
                              ("fsync", fsync)):
            monkeypatch.setattr(files, name, wrapper)
        return self


def kind(call: Call | Any) -> str:
    """What a call wrote: ``history``, ``manifest``, ``output``, ``record``, ``ids`` or ``other``."""
    name = Path(call.path).name
    if name.startswith("events.") and name.endswith(".jsonl"):
        return "history"
    return {"manifest.json": "manifest", "output.log": "output", "agent.json": "record",
            "ids.json": "ids"}.get(name, "other")
