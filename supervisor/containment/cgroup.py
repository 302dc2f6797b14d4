"""cgroup v2: where the unified hierarchy is mounted, our place in it, and one cgroup per run.

The layout is systemd's, one level down: under the server's own cgroup (``0::/path`` in
``/proc/self/cgroup``) a parent ``agent-supervisor-<server id>``, and in it one child per run.
The server never moves itself: a process may only be placed where both it and its destination
share an ancestor it can write to, and the server's own cgroup is exactly that ancestor. No
controllers are enabled anywhere, so the "no internal processes" rule (a cgroup with
controllers in ``cgroup.subtree_control`` may not hold processes) never applies: the parent
holds no process and enables nothing; each run's cgroup holds the run.

A run's child joins its cgroup itself, between fork and exec (it writes ``0`` to
``cgroup.procs``), so not even its first instruction runs outside it.

The mount is found in ``/proc/self/mountinfo``, not assumed at ``/sys/fs/cgroup``: on hybrid
systems (cgroup v1 controllers, v2 for tracking) it lives at ``/sys/fs/cgroup/unified``.
"""
from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass

from . import procfs

log = logging.getLogger(__name__)

PARENT_PREFIX = "agent-supervisor-"


class CgroupUnavailable(Exception):
    """No cgroup v2 hierarchy the server can create cgroups in and move processes into."""


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def cgroup2_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str]]:
    """``(mount point, root within the hierarchy)`` of every cgroup2 mount, in mount order."""
    raw = procfs.read_file(mountinfo, 1 << 22)
    found = []
    for line in (raw or b"").decode("utf-8", "replace").splitlines():
        # id parent major:minor root mount-point options [optional fields...] - type source opts
        fields = line.split()
        try:
            dash = fields.index("-")
        except ValueError:
            continue
        if dash + 1 < len(fields) and fields[dash + 1] == "cgroup2":
            found.append((_unescape(fields[4]), _unescape(fields[3])))
    return found


def own_cgroup(path: str = "/proc/self/cgroup") -> str | None:
    """Our cgroup v2 path (``0::/path``), relative to the hierarchy's root."""
    raw = procfs.read_file(path, 1 << 16)
    for line in (raw or b"").decode("utf-8", "replace").splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return None


def cgroup_of(pid: int) -> str | None:
    return own_cgroup(f"{procfs.PROC}/{pid}/cgroup")


def _under(path: str, root: str) -> str | None:
    """``path`` relative to a mount whose root is ``root``, or None if the mount does not show it."""
    if root == "/":
        return path
    if path == root or path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")):] or "/"
    return None


@dataclass(frozen=True)
class Hierarchy:
    """The cgroup2 mount and the server's own cgroup in it."""

    mount: str
    root: str  # what part of the hierarchy the mount shows ("/" unless it is a bind mount)
    own: str  # our cgroup, relative to the hierarchy's root

    @classmethod
    def find(cls) -> Hierarchy:
        """Ours, or :class:`CgroupUnavailable` saying why not."""
        own = own_cgroup()
        if own is None:
            raise CgroupUnavailable("the server is in no cgroup v2 hierarchy (/proc/self/cgroup has no 0:: line)")
        mounts = cgroup2_mounts()
        if not mounts:
            raise CgroupUnavailable("no cgroup2 file system is mounted (/proc/self/mountinfo)")
        for mount, root in mounts:
            if _under(own, root) is not None:
                return cls(mount, root, own)
        raise CgroupUnavailable(f"no cgroup2 mount shows our cgroup {own!r}")

    def directory(self, path: str) -> str:
        """The directory of the cgroup at hierarchy path ``path``."""
        relative = _under(path, self.root)
        assert relative is not None
        return os.path.join(self.mount, relative.lstrip("/"))

    def path_of(self, directory: str) -> str:
        """The hierarchy path of a cgroup directory (what /proc/<pid>/cgroup says for its members)."""
        relative = os.path.relpath(directory, self.mount)
        base = self.root.rstrip("/")
        return base + "/" + relative if relative != "." else (self.root or "/")


class RunCgroup:
    """The cgroup of one run: its members, its CPU time, its end."""

    def __init__(self, directory: str, path: str) -> None:
        self.directory = directory
        self.path = path  # as /proc/<pid>/cgroup shows it
        self._procs = os.path.join(directory, "cgroup.procs")
        self._cpu_stat = os.path.join(directory, "cpu.stat")

    def join(self) -> None:
        """Move the calling process in. Meant for the child between fork and exec."""
        fd = os.open(self._procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def pids(self) -> list[int]:
        """Its processes now (zombies are not listed: they have left their cgroup)."""
        raw = procfs.read_file(self._procs, 1 << 20)
        return [int(pid) for pid in raw.split()] if raw else []

    def exists(self) -> bool:
        return os.path.isdir(self.directory)

    def holds(self, pid: int) -> bool:
        return cgroup_of(pid) == self.path

    def cpu_usec(self) -> int | None:
        """CPU time of everything that ever ran in it (``usage_usec`` in ``cpu.stat``)."""
        raw = procfs.read_file(self._cpu_stat, 4096)
        for line in (raw or b"").splitlines():
            key, _, value = line.partition(b" ")
            if key == b"usage_usec":
                return int(value)
        return None

    def kill(self) -> bool:
        """SIGKILL every member at once (``cgroup.kill``, Linux 5.14+); False where missing."""
        try:
            fd = os.open(os.path.join(self.directory, "cgroup.kill"), os.O_WRONLY)
        except FileNotFoundError:
            return False
        try:
            os.write(fd, b"1")
            return True
        except OSError as exc:
            log.debug("cgroup.kill of %s: %s", self.directory, exc)
            return False
        finally:
            os.close(fd)

    def remove(self) -> bool:
        """rmdir it; True once it is gone, False while processes (or children) keep it busy."""
        try:
            os.rmdir(self.directory)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                log.warning("cannot remove cgroup %s: %s", self.directory, exc)
            return False


class ServerCgroup:
    """The server's parent cgroup: one per data directory, reused after a restart.

    It exists while it holds run cgroups: made (again) by the first run, removed when the server
    ends with none left. A server that dies without runs leaves nothing behind; one that dies
    with runs leaves them for the next server on its data directory to find.
    """

    def __init__(self, hierarchy: Hierarchy, server_id: str) -> None:
        self.hierarchy = hierarchy
        own_dir = hierarchy.directory(hierarchy.own)
        for name, mode in (("", os.W_OK | os.X_OK), ("cgroup.procs", os.W_OK)):
            if not os.access(os.path.join(own_dir, name), mode):
                raise CgroupUnavailable(f"our cgroup {own_dir} is not writable (is the cgroup delegated to us?)")
        self.directory = os.path.join(own_dir, PARENT_PREFIX + server_id)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create {self.directory}: {exc.strerror or exc}") from exc
        if not os.path.exists(os.path.join(self.directory, "cgroup.procs")):
            raise CgroupUnavailable(f"{self.directory} is not a cgroup")
        self.remove()  # proven to work; kept only if a crashed server left runs in it

    def create(self, name: str) -> RunCgroup:
        """A new empty child cgroup called ``name`` (the caller makes names unique). The parent
        is made again if someone removed it meanwhile."""
        directory = os.path.join(self.directory, name)
        try:
            os.mkdir(directory)
        except FileNotFoundError:
            os.makedirs(directory)
        return self.run_cgroup(directory)

    def run_cgroup(self, directory: str) -> RunCgroup:
        return RunCgroup(directory, self.hierarchy.path_of(directory))

    def owns(self, directory: str) -> bool:
        """Whether ``directory`` is one of our run cgroups (a record is never trusted blindly)."""
        return os.path.dirname(os.path.normpath(directory)) == self.directory

    def children(self) -> list[str]:
        try:
            with os.scandir(self.directory) as entries:
                return [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
        except OSError:
            return []

    def remove(self) -> None:
        """rmdir the parent if nothing is left in it (else the next start tidies up)."""
        try:
            os.rmdir(self.directory)
        except OSError:
            pass
