"""The containment modes a test runs in, and the processes of a test's runs wherever they went.

Every process of a run carries the run's mark in its environment
(``AGENT_SUPERVISOR_RUN=<server id>:<agent>:<run>:<nonce>``, see
``supervisor/containment/subreaper.py``), and a server's id is that of its data directory. A
test that keeps its data directories directly under its ``tmp_path`` can so find every process
its runs started, daemons included, and never one of a test in another pytest-xdist worker.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from supervisor.containment import Containment, procfs, server_id_for
from supervisor.exceptions import ConfigError

#: The modes every containment behaviour is tested in (``group`` is the weaker fallback).
MODES = ["cgroup", "subreaper"]


@functools.cache
def cgroup_unavailable() -> str | None:
    """Why this machine cannot run the cgroup mode, or None if it can."""
    try:
        probe = Containment("cgroup", server_id="probe" + os.urandom(3).hex())
    except ConfigError as exc:
        return str(exc)
    probe.close()
    return None


def need(mode: str) -> None:
    """Skip the cgroup mode, saying why, where the machine has no writable cgroup2 hierarchy."""
    if mode == "cgroup" and (why := cgroup_unavailable()):
        pytest.skip(f"cgroup mode not tested here: {why}")


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    stat = procfs.read_stat(pid)
    return stat is not None and stat.running


def server_ids_under(base: Path) -> set[str]:
    """The server ids of the data directories a test may have used: the folders right under
    its ``tmp_path`` (``data`` for in-process registries, ``dataN`` for ``make_server``)."""
    return {server_id_for(path) for path in base.iterdir() if path.is_dir()} if base.is_dir() else set()


def marked_processes(server_ids: set[str], agent: str | None = None) -> dict[int, str]:
    """Every running process on the machine carrying a run mark of one of ``server_ids`` (and
    of ``agent``, if given): pid -> its command line."""
    found = {}
    for pid in procfs.all_pids():
        mark = procfs.mark_of(pid)
        if pid == os.getpid() or mark is None or not running(pid):
            continue
        server, _, rest = mark.partition(":")
        if server in server_ids and (agent is None or rest.split(":", 1)[0] == agent):
            raw = procfs.read_file(f"{procfs.PROC}/{pid}/cmdline") or b""
            found[pid] = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return found
