"""The server as the reaper of everything its agents start, and how an orphan is traced to its run.

``prctl(PR_SET_CHILD_SUBREAPER)`` makes the server, not init, the new parent of any process
of ours whose parent dies: a daemon that double-forks, or a child left behind when an agent's
main process exits, stays a child of the server. Then:

- **Reaping** is libev's. Once gevent has installed libev's SIGCHLD handler (``AgentProcess``
  does before its first fork), every SIGCHLD makes libev call ``waitpid(-1, WNOHANG)`` until no
  child is left to reap, and hand each status to the child watcher registered for that pid. An
  orphan has no watcher: it is reaped and its status dropped, and no zombie stays. An agent's
  main process has its watcher, so its status reaches its run whatever else exits. The server
  never calls ``waitpid`` itself (a ``waitpid(-1)`` of ours would take statuses from libev's
  watchers), and it cannot reap an agent's own child: only that child's parent may, until the
  parent dies, and then nobody else is waiting for it.
- **Attribution**: the kernel says nothing about where an orphan came from. Three things do:
  its environment (every run's processes inherit ``AGENT_SUPERVISOR_RUN=<server>:<agent>:<run>:
  <nonce>``, read from ``/proc/<pid>/environ``, which keeps what the process was exec'd with);
  the sampler's memory (a process seen below a run's main process stays that run's, by identity,
  after it is reparented); and, for a live parent, the parent chain itself. A process that
  clears its environment *and* double-forks between two samples escapes: cgroup mode has no
  such gap, which is why ``auto`` prefers it.

Other ways that would work, not used: an inherited file descriptor per run (daemons close
theirs), a PID namespace per run (needs privileges, changes the pids agents see), the proc
connector (netlink fork events; root only), or a cgroup v1 named hierarchy where v2 is missing.
"""
from __future__ import annotations

import ctypes
import logging
import os

from . import procfs

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_holders = 0  # containments that want the attribute: it belongs to the process, not to one of them
_set_by_us = False


def _prctl(option: int, arg: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def is_subreaper() -> bool:
    value = ctypes.c_int(0)
    try:
        _prctl(PR_GET_CHILD_SUBREAPER, ctypes.pointer(value))
    except (OSError, AttributeError):
        return False
    return bool(value.value)


def acquire() -> bool:
    """Make this process a child subreaper (kept until the last :func:`release`); False if the
    kernel will not (not Linux, or older than 3.4)."""
    global _holders, _set_by_us
    if _holders == 0:
        if is_subreaper():
            _set_by_us = False  # someone made us one already: leave it as we found it
        else:
            try:
                _prctl(PR_SET_CHILD_SUBREAPER, 1)
            except (OSError, AttributeError) as exc:
                log.info("cannot become a child subreaper: %s", exc)
                return False
            _set_by_us = True
    _holders += 1
    return True


def release() -> None:
    global _holders, _set_by_us
    if _holders == 0:
        return
    _holders -= 1
    if _holders == 0 and _set_by_us:
        try:
            _prctl(PR_SET_CHILD_SUBREAPER, 0)
        except OSError:
            pass
        _set_by_us = False


def own_children() -> list[int]:
    """Pids of our children, zombies included, from each of our threads' ``children`` file
    (children belong to the thread that forked them or that the kernel reparented them to)."""
    base = f"{procfs.PROC}/self/task"
    pids: list[int] = []
    try:
        threads = os.listdir(base)
    except OSError:
        return pids
    for tid in threads:
        raw = procfs.read_file(f"{base}/{tid}/children", 1 << 20)
        if raw:
            pids.extend(int(pid) for pid in raw.split())
    return pids


def unreaped_children() -> list[int]:
    """Our children that are zombies: libev reaps them on its next loop iteration."""
    zombies = []
    for pid in own_children():
        stat = procfs.read_stat(pid)
        if stat is not None and not stat.running:
            zombies.append(pid)
    return zombies


def new_mark(server_id: str, agent: str, run: int) -> str:
    """The run's mark: server, agent and run for a reader, and a nonce so that a new run with a
    number used before (the agent was deleted and re-created) never matches an old one."""
    return f"{server_id}:{agent}:{run}:{os.urandom(4).hex()}"


def mark_server(mark: str) -> str:
    return mark.split(":", 1)[0]

