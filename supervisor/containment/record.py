"""What is written down about a live run so that a server starting after a crash can find it.

A :class:`RunRecord` is made by the run's :class:`~.scope.RunScope`, kept in the agent's
record (``agent.json``, see :mod:`supervisor.store`) while the run lives, and read back by
:mod:`.recovery`. Nothing in it is trusted blindly: a process is named by pid *and* start time
(never a bare pid, which may have been reused), the boot id says whether those still mean
anything, and a cgroup directory must be one of the server's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .procfs import Identity


@dataclass(frozen=True, slots=True)
class RunRecord:
    """How to find the processes of one live run again."""

    mode: str  # cgroup, subreaper or group
    mark: str  # the run's environment mark (see subreaper.new_mark)
    boot_id: str  # the boot the identities belong to
    main: Identity | None = None  # the run's main process
    started_at: float | None = None
    cgroup: str | None = None  # the run cgroup's directory (cgroup mode)
    members: tuple[Identity, ...] = ()  # processes seen in the run (tree modes)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mode": self.mode,
            "mark": self.mark,
            "boot_id": self.boot_id,
            "main": self.main.to_json() if self.main else None,
            "started_at": self.started_at,
        }
        if self.cgroup is not None:
            data["cgroup"] = self.cgroup
        if self.members:
            data["members"] = [identity.to_json() for identity in self.members]
        return data

    @classmethod
    def from_dict(cls, raw: object) -> RunRecord | None:
        """Read a saved record back; None for anything that does not say which run it was (a
        record without a mark, from an older server, is never trusted)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("mark"), str):
            return None
        started = raw.get("started_at")
        cgroup = raw.get("cgroup")
        members = raw.get("members")
        return cls(
            mode=str(raw.get("mode") or ""),
            mark=raw["mark"],
            boot_id=str(raw.get("boot_id") or ""),
            main=Identity.from_json(raw.get("main")),
            started_at=float(started) if isinstance(started, (int, float)) and not isinstance(started, bool) else None,
            cgroup=cgroup if isinstance(cgroup, str) else None,
            members=tuple(i for item in (members if isinstance(members, list) else ())
                          if (i := Identity.from_json(item)) is not None),
        )
