"""How bytes reach the disk: appends, atomic replacements and fsync, in one place.

Every write of the data directory goes through these few functions (history segments and their
manifests, ``agent.json``, ``output.log``, the id reservation), for two reasons:

- **What failed is known exactly.** Appends use ``os.write`` on a raw descriptor, not a
  buffered file: a buffered file writes when its buffer fills, so an error (``ENOSPC``) would
  surface in the middle of an unrelated call, with an unknown part of the data written.
  :func:`append` says how many bytes made it, and a caller can cut a torn line back.
- **Faults can be injected.** The tests replace these functions to make a write fail at a
  chosen step (``EIO`` has no other safe way to happen on demand).

Nothing here blocks the hub for long: writes go to the page cache. ``fsync`` can take
milliseconds on a real disk, so :func:`fsync_all` runs it in gevent's thread pool when called
from a greenlet that may wait (the event log's group commit).
"""
from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

#: ``errno`` values that mean "no space" (a full file system or a quota).
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class PartialWrite(OSError):
    """An append stopped partway: ``written`` bytes of the data are in the file."""

    def __init__(self, cause: OSError, written: int) -> None:
        super().__init__(cause.errno, cause.strerror, cause.filename)
        self.written = written


def open_append(path: Path) -> int:
    """A descriptor that appends to ``path`` (created if needed), closed on exec so that no
    agent inherits it. Raises ``OSError``."""
    return os.open(path, _APPEND_FLAGS, 0o644)


def append(fd: int, data: bytes) -> None:
    """Write all of ``data`` at the end of the file. Raises :class:`PartialWrite` (an
    ``OSError``) saying how much was written when it could not write everything."""
    view = memoryview(data)
    written = 0
    size = len(data)
    while written < size:
        try:
            written += os.write(fd, view[written:])
        except OSError as exc:
            raise PartialWrite(exc, written) from exc


def truncate(fd: int, size: int) -> None:
    """Cut the file back to ``size`` bytes (a torn batch). Raises ``OSError``."""
    os.ftruncate(fd, size)


def unlinked(fd: int) -> bool:
    """Whether the file behind ``fd`` was removed from its folder (written data would go to a
    file nobody can open again). Raises ``OSError``."""
    return os.fstat(fd).st_nlink == 0


def close(fd: int) -> None:
    """Close ``fd``; errors (a delayed write error of NFS, say) are the caller's to report."""
    os.close(fd)


def fsync(fd: int) -> None:
    os.fsync(fd)


def fsync_all(fds: Iterable[int], in_thread: bool) -> None:
    """``fsync`` each descriptor; ``in_thread`` runs them in gevent's thread pool, the calling
    greenlet waiting without holding the hub."""
    fds = list(fds)
    if not fds:
        return
    if not in_thread:
        for fd in fds:
            fsync(fd)
        return
    import gevent

    pool = gevent.get_hub().threadpool
    results = [pool.spawn(fsync, fd) for fd in fds]
    for result in results:
        result.get()


def replace(path: Path, data: bytes, durable: bool = False, in_thread: bool = False) -> None:
    """Make ``path`` hold ``data``, atomically: a temporary file beside it, renamed over it. A
    reader (or the next start, after a crash) sees the old content or the new, never a mix.
    ``durable`` also fsyncs the file before the rename and the folder after it (power loss).
    Raises ``OSError``; a failed attempt leaves the old file as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            append(fd, data)
            if durable:
                fsync_all([fd], in_thread)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # the file meant, not its temporary
    if durable:
        sync_dir(path.parent, in_thread)


def sync_dir(directory: Path, in_thread: bool = False) -> None:
    """``fsync`` a folder, so that a rename or a new file in it survives power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fsync_all([fd], in_thread)
    finally:
        os.close(fd)


def read(path: Path) -> bytes:
    """The whole of a small file (a manifest, a record). Raises ``OSError``;
    ``IsADirectoryError`` for a folder where a file should be."""
    with open(path, "rb") as f:
        return f.read()


def describe(exc: OSError) -> str:
    """``ENOSPC: No space left on device``: what a person (and a log search) recognises."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{name}: {text}" if name else text
