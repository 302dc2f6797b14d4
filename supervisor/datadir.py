"""Where things live in the data directory, in one place for the parts that share it.

::

    <data_dir>/
      agents/<name>/          one folder per agent (the name rule makes it a safe folder name)
        events.000001.jsonl   its history segments and forgotten.json  (supervisor.history)
        agent.json            its definition and last known state      (supervisor.store)
        output.log            the raw bytes of every run               (supervisor.store)
      supervisor/             history of the supervisor's own channel (agent_added, agent_removed)
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .exceptions import DataDirError

AGENTS = "agents"
SUPERVISOR = "supervisor"


def agents_dir(data_dir: Path) -> Path:
    return data_dir / AGENTS


def agent_dir(data_dir: Path, name: str) -> Path:
    """The folder of agent ``name`` (which must have passed :func:`supervisor.names.check`)."""
    return data_dir / AGENTS / name


def supervisor_dir(data_dir: Path) -> Path:
    return data_dir / SUPERVISOR


def check_writable(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and prove a file can be made in it; raises
    :class:`DataDirError` saying what to do otherwise."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".probe-"):
            pass
    except OSError as exc:
        raise DataDirError(
            f"data directory {str(data_dir)!r} is not writable ({exc.strerror or exc});"
            " choose another with --data-dir or AGENT_SUPERVISOR_DATA_DIR"
        ) from exc
