"""Where things live in the data directory, in one place for the parts that share it.

::

    <data_dir>/
      agents/<name>/          one folder per agent (the name rule makes it a safe folder name)
        events.000001.jsonl   its history segments and forgotten.json  (supervisor.history)
        agent.json            its definition and last known state      (supervisor.store)
        output.log            the raw bytes of every run               (supervisor.store)
        manifest.json         segment numbering and known losses          (supervisor.manifest)
      supervisor/             history of the supervisor's own channel (agent_added, agent_removed)
      ids.json, ids.spare     the reserved id high-water mark             (supervisor.ids)
      server.lock             held by the one live server                 (lock() below)
      server.json             how to reach it                              (supervisor.runtime)

One server per data directory: two would end each other's runs (each marks the other's
running agents ``lost`` when it starts) and write the same files. :func:`lock` takes an
exclusive ``flock`` on ``server.lock`` for the server's lifetime; the kernel lets go of it when
the process dies, however it dies, so a crash never leaves a stale lock behind.

It is the user's alone: it holds what the agents printed, what was typed into them (passwords
too) and their environment (API keys). ``serve`` sets the umask to 077 before it creates
anything (:func:`private_umask`), so every folder is 0700 and every file 0600, and the data
dir is created 0700 whoever creates it. One that already exists open to others (made by an
older version, or by hand) is not changed behind the user's back, but said at start, with the
command that fixes it: systemd (``StateDirectoryMode=``) and GnuPG (its home directory) do the
same.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import tempfile
from pathlib import Path

from .exceptions import DataDirError, DataDirLocked

log = logging.getLogger(__name__)

#: The umask of the server: nothing it creates is readable by anyone else.
PRIVATE_UMASK = 0o077

AGENTS = "agents"
SUPERVISOR = "supervisor"
LOCK_FILE = "server.lock"


def agents_dir(data_dir: Path) -> Path:
    return data_dir / AGENTS


def agent_dir(data_dir: Path, name: str) -> Path:
    """The folder of agent ``name`` (which must have passed :func:`supervisor.names.check`)."""
    return data_dir / AGENTS / name


def supervisor_dir(data_dir: Path) -> Path:
    return data_dir / SUPERVISOR


def private_umask() -> int:
    """Make every file and folder this process creates from now on its user's alone (umask
    077); returns the umask it had, which agents get back (their files are the user's
    business: a build's output must not become unreadable to a web server)."""
    return os.umask(PRIVATE_UMASK)


def check_writable(data_dir: Path) -> None:
    """Create ``data_dir`` if needed (mode 0700) and prove a file can be made in it; raises
    :class:`DataDirError` saying what to do otherwise. Warns when it is open to other users. A
    full file system is not refused: the server starts, lists every agent, and says it is
    degraded until there is room."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".probe-"):
            pass
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and data_dir.is_dir():
            return
        raise DataDirError(
            f"data directory {str(data_dir)!r} is not writable ({exc.strerror or exc});"
            " choose another with --data-dir or AGENT_SUPERVISOR_DATA_DIR"
        ) from exc
    warning = shared_warning(data_dir)
    if warning:
        log.warning("%s", warning)


def shared_warning(data_dir: Path) -> str | None:
    """What to tell the user when other users may enter ``data_dir`` (any group or other
    permission bit: with the folder closed, nothing inside can be reached), else None."""
    try:
        mode = stat.S_IMODE(data_dir.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (f"data directory {str(data_dir)!r} is open to other users (mode {mode:04o}): they can read"
            " what the agents printed, what was typed into them and their environment (API keys);"
            f" make it yours alone with: chmod 700 {str(data_dir)!r}")


class DataDirLock:
    """The lock :func:`lock` took; :meth:`release` (or the end of the process) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


def lock(data_dir: Path) -> DataDirLock:
    """Take the data directory for this process, or raise :class:`DataDirLocked` naming the
    server that has it (its pid, and its URL from ``server.json``). The descriptor is not
    inherited by agents (``O_CLOEXEC``): an agent left running must not keep the lock."""
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DataDirError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _holder(fd, data_dir)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataDirLocked(
                f"data directory {str(data_dir)!r} is in use by another agent-supervisor ({holder}); stop it"
                " first, or choose another data directory with --data-dir or AGENT_SUPERVISOR_DATA_DIR"
            ) from None
        raise DataDirError(f"cannot lock {path}: {exc.strerror or exc}") from exc
    try:  # who holds it, for the next one to say (best effort: a full disk cannot stop a start)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    return DataDirLock(path, fd)


def _holder(fd: int, data_dir: Path) -> str:
    """``pid 4242, http://127.0.0.1:8151``: what is known of the server holding the lock."""
    try:
        pid = int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return "pid unknown"
    from . import runtime

    try:
        info = runtime.read_runtime_file(data_dir)
    except runtime.RuntimeFileError:
        info = None
    if info is not None and info.pid == pid:
        return f"pid {pid}, {info.url}"
    return f"pid {pid}, still starting"
