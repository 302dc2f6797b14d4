"""The process table as /proc shows it: who a process is, its parent, what it costs, its mark.

Everything here is a plain read of a small procfs file (no blocking I/O: procfs answers from
kernel memory). Reads go through ``os.open``/``os.read`` rather than ``open()``: a sampler that
reads hundreds of these a second should not build a buffered file object for each.

A process is named by an :class:`Identity`, its pid *and* its start time. A bare pid may have
been reused by an unrelated process since it was recorded (after a crash, certainly); the pair
cannot be, within one boot. Signals go through a pidfd opened *before* the identity is checked,
so the process checked is the process signalled (systemd's ``PidRef`` does the same).
"""
from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

PROC = "/proc"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: The per-run mark every process of a run inherits in its environment (see ``subreaper``).
MARK_VARIABLE = "AGENT_SUPERVISOR_RUN"
_MARK_PREFIX = MARK_VARIABLE.encode() + b"="
_PIDFD_MISSING = False  # set when the kernel has no pidfd_open (before Linux 5.3)


@dataclass(frozen=True, slots=True)
class Identity:
    """One process for as long as it lives: pid plus start time (clock ticks after boot)."""

    pid: int
    start: int

    def to_json(self) -> list[int]:
        return [self.pid, self.start]

    @classmethod
    def from_json(cls, raw: object) -> Identity | None:
        """Parse ``[pid, start]``; None for anything else (a record from an older server)."""
        if (isinstance(raw, (list, tuple)) and len(raw) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw)):
            return cls(int(raw[0]), int(raw[1]))
        return None


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the supervisor uses."""

    pid: int
    ppid: int
    pgid: int
    state: str  # R, S, D, T, Z (zombie), X (dead), ...
    start: int  # field 22: start time in clock ticks after boot
    cpu_ticks: int  # utime + stime
    rss_pages: int

    @property
    def identity(self) -> Identity:
        return Identity(self.pid, self.start)

    @property
    def running(self) -> bool:
        """Not a zombie: it can still do something (and still be signalled to some effect)."""
        return self.state not in ("Z", "X")

    @property
    def rss_bytes(self) -> int:
        return self.rss_pages * PAGE_SIZE


def read_file(path: str, limit: int = 65536) -> bytes | None:
    """The contents of a small procfs or cgroupfs file; None if it (or its process) is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, limit)
    except OSError:  # ESRCH: the process went away between open and read
        return None
    finally:
        os.close(fd)


def parse_stat(pid: int, raw: bytes) -> ProcStat | None:
    # The command name (field 2) is in parentheses and may itself contain ") ": split after
    # the last one. Fields after it are numbered from 3.
    try:
        fields = raw[raw.rindex(b")") + 2:].split()
        return ProcStat(
            pid=pid, ppid=int(fields[1]), pgid=int(fields[2]), state=fields[0].decode(),
            start=int(fields[19]), cpu_ticks=int(fields[11]) + int(fields[12]),
            rss_pages=int(fields[21]),
        )
    except (ValueError, IndexError):
        return None


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat fields; None when there is no such process."""
    raw = read_file(f"{PROC}/{pid}/stat", 4096)
    return None if raw is None else parse_stat(pid, raw)


def identity_of(pid: int) -> Identity | None:
    stat = read_stat(pid)
    return None if stat is None else stat.identity


def is_running(identity: Identity) -> bool:
    """Whether that very process (not a later one with its pid) is alive and not a zombie."""
    stat = read_stat(identity.pid)
    return stat is not None and stat.start == identity.start and stat.running


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


def scan(pause: Callable[[], None] | None = None, every: int = 128) -> Iterator[ProcStat]:
    """Every process on the machine. ``pause`` is called every ``every`` processes, so that a
    caller on the gevent hub can let others run during a long scan."""
    for count, pid in enumerate(all_pids(), 1):
        stat = read_stat(pid)
        if stat is not None:
            yield stat
        if pause is not None and count % every == 0:
            pause()


def mark_of(pid: int) -> str | None:
    """The run mark in the process's environment (as it was at its exec), if it has one."""
    raw = read_file(f"{PROC}/{pid}/environ", 1 << 20)
    if not raw or _MARK_PREFIX not in raw:
        return None
    for item in raw.split(b"\0"):
        if item.startswith(_MARK_PREFIX):
            return item[len(_MARK_PREFIX):].decode("utf-8", "replace")
    return None


def boot_id() -> str:
    """This boot's id: recorded start times mean nothing after a reboot."""
    raw = read_file(f"{PROC}/sys/kernel/random/boot_id", 128)
    return raw.decode().strip() if raw else ""


def send_signal(pid: int, sig: int, belongs: Callable[[int], bool]) -> bool:
    """Send ``sig`` to ``pid`` if ``belongs(pid)`` holds for the process that has that pid now.

    The pidfd is opened first and the check made after: the process the check saw is then the
    one the pidfd names, even if it exits and its pid is reused in between. False if the
    process is gone, does not belong, or may not be signalled by us.
    """
    global _PIDFD_MISSING
    fd = -1
    if not _PIDFD_MISSING:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EINVAL):
                return False
            _PIDFD_MISSING = True  # an old kernel: check, then kill (a tiny window remains)
    try:
        if not belongs(pid):
            return False
        if fd >= 0:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def send_to_identity(identity: Identity, sig: int) -> bool:
    """Signal exactly that process; never another that has since taken its pid."""
    def same(pid: int) -> bool:
        stat = read_stat(pid)
        return stat is not None and stat.start == identity.start

    return send_signal(identity.pid, sig, same)


def children_index(stats: Iterable[ProcStat]) -> dict[int, list[ProcStat]]:
    """Processes by parent pid, from one scan."""
    index: dict[int, list[ProcStat]] = {}
    for stat in stats:
        index.setdefault(stat.ppid, []).append(stat)
    return index


def descendants(roots: Iterable[ProcStat], index: dict[int, list[ProcStat]]) -> list[ProcStat]:
    """``roots`` and everything below them in ``index`` (each process once)."""
    found: dict[int, ProcStat] = {}
    todo = list(roots)
    while todo:
        stat = todo.pop()
        if stat.pid in found:
            continue
        found[stat.pid] = stat
        todo.extend(index.get(stat.pid, ()))
    return list(found.values())
