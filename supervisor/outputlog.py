"""An agent's ``output.log``: the raw bytes of every run, rotated by size like supervisord's logs,
and never a reason for an agent to stop.

``output.log`` holds what the agent's runs wrote to their terminal, byte for byte, each run
after a header line (``--- run 3 pid 4242 at 2026-11-21T12:00:00.123Z ---``). Before a write
would take it past ``output_log_max_bytes`` (default 10 MiB) it is rotated: ``output.log``
becomes ``output.log.1``, ``.1`` becomes ``.2`` and so on, and the oldest past
``output_log_backups`` (default 3) is deleted. So one agent keeps at most
``(backups + 1) * max_bytes`` bytes of raw output (40 MiB by default); a single read of the
terminal (at most 64 KiB) is never split across files. ``max_bytes = 0`` never rotates;
``backups = 0`` starts ``output.log`` again empty when it is full.

:class:`OutputLog` is the one writer a run holds. Each chunk is one ``os.write`` to the page
cache as it is read (no buffer whose flush fails later). A write, an open or a rotation that
fails (a full disk, an I/O error, a read-only remount, the file removed underneath) is reported
to the :class:`~supervisor.health.StorageHealth` (one episode, not one per chunk), the bytes it
could not keep are counted there (``output_bytes_lost``, which ``/healthz``, ``/api/sse/stats``
and ``/metrics`` show), and it is tried again a little later, by the next chunk or by the
health's retries if the agent prints nothing more. It never raises: the agent and its live
streams go on.

:func:`kept_files` lists what is kept, oldest first, for the download
(``GET /api/agents/<name>/output.log``).
"""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from . import files
from .health import StorageHealth

#: A failing ``output.log`` is tried again at most this often, and checked this often for
#: having been removed underneath (seconds).
OUTPUT_RETRY_S = 0.5
OUTPUT_CHECK_S = 1.0


def backup_path(path: Path, number: int) -> Path:
    """``output.log.<number>`` beside ``path`` (1 is the newest backup)."""
    return path.with_name(f"{path.name}.{number}")


def kept_files(path: Path) -> list[Path]:
    """The files kept of one agent's output, oldest first: its backups, then ``output.log``.
    Backups past ``backups`` that an earlier setting left are listed too, while they exist."""
    numbers = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        suffix = candidate.name[len(path.name) + 1:]
        if suffix.isascii() and suffix.isdigit() and candidate.is_file():
            numbers.append(int(suffix))
    kept = [backup_path(path, number) for number in sorted(numbers, reverse=True)]
    if path.is_file():
        kept.append(path)
    return kept


def rotate(path: Path, backups: int) -> None:
    """Shift ``output.log`` to ``.1``, ``.1`` to ``.2``, ...; delete what goes past ``backups``
    (all of it with 0). Raises ``OSError``."""
    for old in kept_files(path):
        if old == path:
            continue
        number = int(old.name.rsplit(".", 1)[1])
        if number >= backups:
            old.unlink(missing_ok=True)
    for number in range(backups - 1, 0, -1):
        older = backup_path(path, number)
        if older.exists():
            os.replace(older, backup_path(path, number + 1))
    if backups:
        os.replace(path, backup_path(path, 1))
    else:
        path.unlink(missing_ok=True)


class OutputLog:
    """One run's ``output.log`` of agent ``owner``: appended as the agent prints, rotated before
    it would grow past ``max_bytes`` (see the module docstring).

    :meth:`write` never raises and never blocks for long. While the file cannot be written (or
    rotated), the bytes are dropped and counted; a removed file is noticed within
    :data:`OUTPUT_CHECK_S` and made again (what was in it is gone with it).
    """

    __slots__ = ("_check_at", "_fd", "_failing", "_retry_at", "_size", "backups", "health", "max_bytes", "owner",
                 "path")

    def __init__(self, path: Path, owner: str, health: StorageHealth, max_bytes: int = 0, backups: int = 0) -> None:
        self.path = path
        self.owner = owner
        self.health = health
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self._size = 0
        self._failing = False
        self._retry_at = 0.0
        self._check_at = 0.0

    @property
    def size(self) -> int:
        """Bytes in the current ``output.log``, as far as this writer knows."""
        return self._size

    def write(self, data: bytes) -> None:
        now = time.monotonic()
        fd = self._fd
        if fd is not None and now >= self._check_at:
            self._check_at = now + OUTPUT_CHECK_S
            fd = self._check_removed(fd)
        if fd is None and now < self._retry_at:
            self.health.output_bytes_lost += len(data)
            return
        try:
            fd = self._ready(len(data))
        except OSError as exc:
            self._fail(exc, len(data), now)
            return
        try:
            files.append(fd, data)
        except files.PartialWrite as exc:
            self._size += exc.written
            self._fail(exc, len(data) - exc.written, now)
            return
        self._size += len(data)
        if self._failing:
            self._failing = False
            self.health.recovered(self.owner, "output")

    def _ready(self, incoming: int) -> int:
        """The descriptor to append ``incoming`` bytes to: opened if it is not, and the file
        rotated first if they would take it past ``max_bytes``. Raises ``OSError``."""
        fd = self._fd
        if fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._fd = files.open_append(self.path)
            self._size = os.fstat(fd).st_size
        if self.max_bytes and self._size and self._size + incoming > self.max_bytes:
            self._close()
            rotate(self.path, self.backups)
            fd = self._fd = files.open_append(self.path)
            self._size = os.fstat(fd).st_size
        return fd

    def _check_removed(self, fd: int) -> int | None:
        try:
            removed = files.unlinked(fd)
        except OSError:
            return fd
        if not removed:
            return fd
        self._close()
        self._failing = True
        self.health.failed(self.owner, "output", self.path,
                           FileNotFoundError(errno.ENOENT, "removed while it was being written", str(self.path)),
                           self._probe)
        return None

    def _fail(self, exc: OSError, lost: int, now: float) -> None:
        self.health.output_bytes_lost += lost
        self._retry_at = now + OUTPUT_RETRY_S
        self._close()
        self._failing = True
        self.health.failed(self.owner, "output", self.path, exc, self._probe)

    def _probe(self) -> None:
        """Can the file be opened (and rotated, if it is full) again? The health's retry: the
        agent may print nothing more."""
        if not self._failing or self._fd is not None:
            return
        try:
            files.append(self._ready(0), b"")
        except OSError as exc:
            self._close()
            self.health.failed(self.owner, "output", self.path, exc, self._probe)
            return
        self._failing = False
        self.health.recovered(self.owner, "output")

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                files.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        """The run ended: give the descriptor back."""
        self._close()
