"""An agent's ``output.log``: the raw bytes of every run, rotated by size like supervisord's logs.

``output.log`` holds what the agent's runs wrote to their terminal, byte for byte, each run
after a header line (``--- run 3 pid 4242 at 2026-11-21T12:00:00.123Z ---``). Before a write
would take it past ``output_log_max_bytes`` (default 10 MiB) it is rotated: ``output.log``
becomes ``output.log.1``, ``.1`` becomes ``.2`` and so on, and the oldest past
``output_log_backups`` (default 3) is deleted. So one agent keeps at most
``(backups + 1) * max_bytes`` bytes of raw output (40 MiB by default); a single read of the
terminal (at most 64 KiB) is never split across files. ``max_bytes = 0`` never rotates;
``backups = 0`` starts ``output.log`` again empty when it is full.

:class:`RotatingOutput` is the writer a run holds; :func:`kept_files` lists what is kept,
oldest first, for the download (``GET /api/agents/<name>/output.log``).
"""
from __future__ import annotations

import logging
import os
from io import BufferedWriter
from pathlib import Path

from .faults import StorageFaults

log = logging.getLogger(__name__)


def backup_path(path: Path, number: int) -> Path:
    """``output.log.<number>`` beside ``path`` (1 is the newest backup)."""
    return path.with_name(f"{path.name}.{number}")


def kept_files(path: Path, backups: int) -> list[Path]:
    """The files kept of one agent's output, oldest first: its backups, then ``output.log``.
    Backups past ``backups`` that an earlier setting left are listed too, while they exist."""
    numbers = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        suffix = candidate.name[len(path.name) + 1:]
        if suffix.isascii() and suffix.isdigit() and candidate.is_file():
            numbers.append(int(suffix))
    files = [backup_path(path, number) for number in sorted(numbers, reverse=True)]
    if path.is_file():
        files.append(path)
    return files


def rotate(path: Path, backups: int) -> None:
    """Shift ``output.log`` to ``.1``, ``.1`` to ``.2``, ...; delete what goes past ``backups``
    (all of it with 0). Raises ``OSError``."""
    for old in kept_files(path, backups):
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


class RotatingOutput:
    """One run's writer of ``output.log``: appends, and rotates before the file would grow past
    ``max_bytes``. Buffered (the agent flushes it after each burst of output); a write that
    fails is given up and counted in ``faults``, never raised: the agent's lines go on."""

    __slots__ = ("_file", "_size", "backups", "faults", "max_bytes", "path")

    def __init__(self, path: Path, max_bytes: int, backups: int, faults: StorageFaults) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.faults = faults
        self._file: BufferedWriter | None = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            output = open(self.path, "ab")  # noqa: SIM115 - held until close()
        except OSError as exc:
            self._fail("open", exc)
            return
        self._file = output
        self._size = output.tell()

    def _fail(self, what: str, exc: OSError) -> None:
        self.faults.failed("output")
        log.warning("%s: %s failed: %s", self.path, what, exc.strerror or exc)

    @property
    def size(self) -> int:
        """Bytes in the current ``output.log`` (written or buffered)."""
        return self._size

    def write(self, data: bytes) -> None:
        if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        output = self._file
        if output is None:
            return
        try:
            output.write(data)
        except OSError as exc:
            self._fail("a write", exc)
            return
        self._size += len(data)

    def _rotate(self) -> None:
        self.close()
        try:
            rotate(self.path, self.backups)
        except OSError as exc:
            self._fail("rotation", exc)
        self._open()

    def flush(self) -> None:
        output = self._file
        if output is None:
            return
        try:
            output.flush()
        except OSError as exc:
            self._fail("a write", exc)

    def close(self) -> None:
        output, self._file = self._file, None
        if output is None:
            return
        try:
            output.close()
        except OSError as exc:
            self._fail("a write", exc)
