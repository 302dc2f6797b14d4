"""Where things live in the data directory, in one place for the parts that share it.

::

    <data_dir>/
      agents/<name>/          one folder per agent (the name rule makes it a safe folder name)
        events.000001.jsonl   its history segments and forgotten.json  (supervisor.history)
        agent.json            its definition and last known state      (supervisor.store)
        output.log            the raw bytes of every run               (supervisor.store)
      supervisor/             history of the supervisor's own channel (agent_added, agent_removed)

It is the user's alone: it holds what the agents printed, what was typed into them (passwords
too) and their environment (API keys). ``serve`` sets the umask to 077 before it creates
anything (:func:`private_umask`), so every folder is 0700 and every file 0600, and the data
dir is created 0700 whoever creates it. One that already exists open to others (made by an
older version, or by hand) is not changed behind the user's back, but said at start, with the
command that fixes it: systemd (``StateDirectoryMode=``) and GnuPG (its home directory) do the
same.
"""
from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

from .exceptions import DataDirError

log = logging.getLogger(__name__)

#: The umask of the server: nothing it creates is readable by anyone else.
PRIVATE_UMASK = 0o077

AGENTS = "agents"
SUPERVISOR = "supervisor"


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
    :class:`DataDirError` saying what to do otherwise. Warns when it is open to other users."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".probe-"):
            pass
    except OSError as exc:
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
