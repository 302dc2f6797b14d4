"""What is kept of an agent besides its events: its record (``agent.json``) and its raw output.

:class:`AgentRecord` is an agent's definition and last known state as plain values: what a
supervisor that starts later needs to list the agent again (and, in its :class:`Processes`, to
find a live run's processes after a crash), and what the API renders.
:class:`AgentStore` writes records atomically and opens each run's
:class:`~supervisor.outputlog.OutputLog` (see :mod:`supervisor.datadir` for where, and
:mod:`supervisor.outputlog` for rotation and what a failing ``output.log`` does). With
``data_dir`` None nothing is kept.

Writes of records are small and rare (one per change of state); reading happens once, at
start. Not safe to share between threads.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import datadir, files
from .containment.record import RunRecord
from .containment.usage import Figures
from .health import StorageHealth
from .outputlog import OutputLog, kept_files
from .spec import AgentSpec

AGENT_FILE = "agent.json"
OUTPUT_FILE = "output.log"


@dataclass(frozen=True)
class Processes:
    """An agent's processes: how they are kept together, what the end of its last run did with
    them, what they cost now, and, while a run lives, how to find it again after a crash."""

    mode: str  # cgroup, subreaper or group: its current or last run's, else the server's
    leftovers: str = "kill"  # what the end of the main process does with the rest: kill or keep
    cgroup: str | None = None  # the current or last run's cgroup, as /proc/<pid>/cgroup shows it
    ended: int = 0  # processes of the last run the supervisor ended (stop, leftovers, recovery)
    kept: int = 0  # processes the last run left behind that were kept (leftovers = keep)
    live_run: RunRecord | None = None  # the live run, for a server starting after a crash
    usage: Figures | None = None  # what they cost now (the sampler's): live, never saved

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "leftovers": self.leftovers,
            "cgroup": self.cgroup,
            "ended": self.ended,
            "kept": self.kept,
            "live_run": self.live_run.to_dict() if self.live_run is not None else None,
        }

    @classmethod
    def from_dict(cls, raw: object) -> Processes | None:
        if not isinstance(raw, dict):
            return None
        cgroup = raw.get("cgroup")
        return cls(
            mode=str(raw.get("mode") or ""),
            leftovers=str(raw.get("leftovers") or "kill"),
            cgroup=cgroup if isinstance(cgroup, str) else None,
            ended=int(raw.get("ended") or 0),
            kept=int(raw.get("kept") or 0),
            live_run=RunRecord.from_dict(raw.get("live_run")),
        )


@dataclass(frozen=True)
class AgentRecord:
    """An agent's definition and state at one moment. Times are epoch seconds; ``state`` is the
    :class:`~supervisor.states.AgentState` value, None before the first run."""

    spec: AgentSpec
    state: str | None = None
    run: int = 0
    pid: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    reason: str = ""
    lines: int = 0
    extractions: int = 0
    extractions_cut: int = 0
    created_at: float = 0.0
    restarts: int = 0
    cols: int = 0
    rows: int = 0
    processes: Processes | None = None  # None: a record from before containment
    origin: str = "api"  # where the definition came from: "api" (POST /api/agents) or "config"
    autostart: bool = True  # a config agent: started by serve and reload
    # An agent that was active when its server stopped and asked to be kept running (restart
    # always or on-failure): the next server starts it again (PM2's resurrect).
    resume: bool = False
    # Live, never saved: the run waits at a prompt (see supervisor.inputwait).
    waiting_input: bool = False
    prompt: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def duration_s(self, now: float) -> float | None:
        """Seconds the last run lasted, or has lasted by ``now`` if it still runs."""
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else now
        return round(max(0.0, end - self.started_at), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "state": self.state,
            "run": self.run,
            "pid": self.pid,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "reason": self.reason,
            "lines": self.lines,
            "extractions": self.extractions,
            "extractions_cut": self.extractions_cut,
            "created_at": self.created_at,
            "restarts": self.restarts,
            "cols": self.cols,
            "rows": self.rows,
            "processes": self.processes.to_dict() if self.processes is not None else None,
            "origin": self.origin,
            "autostart": self.autostart,
            "resume": self.resume,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AgentRecord:
        """Rebuild a saved record; fields an older version did not write take their defaults.
        Raises ``KeyError``, ``TypeError`` or ``ValueError`` for a damaged one."""
        spec = AgentSpec.from_dict(raw["spec"])
        return cls(
            spec=spec,
            state=raw.get("state") or None,
            run=int(raw.get("run") or 0),
            pid=raw.get("pid"),
            started_at=raw.get("started_at"),
            ended_at=raw.get("ended_at"),
            exit_code=raw.get("exit_code"),
            signal=raw.get("signal"),
            reason=raw.get("reason") or "",
            lines=int(raw.get("lines") or 0),
            extractions=int(raw.get("extractions") or 0),
            extractions_cut=int(raw.get("extractions_cut") or 0),
            created_at=float(raw.get("created_at") or 0.0),
            restarts=int(raw.get("restarts") or 0),
            cols=int(raw.get("cols") or spec.cols),
            rows=int(raw.get("rows") or spec.rows),
            processes=Processes.from_dict(raw.get("processes")),
            origin="config" if raw.get("origin") == "config" else "api",
            autostart=raw.get("autostart") is not False,
            resume=raw.get("resume") is True,
        )


class AgentStore:
    """Records and output files of every agent under ``data_dir`` (None: keep nothing).

    ``health`` hears of output failures (record failures are the caller's to report: a save
    that fails must be able to refuse a new agent); ``durable`` fsyncs records."""

    def __init__(self, data_dir: Path | None, health: StorageHealth | None = None, durable: bool = False) -> None:
        self.data_dir = data_dir
        self.health = health if health is not None else StorageHealth()
        self.durable = durable

    def _directory(self, name: str) -> Path | None:
        return None if self.data_dir is None else datadir.agent_dir(self.data_dir, name)

    def names(self) -> list[str]:
        """Agents that have a record, in name order."""
        if self.data_dir is None:
            return []
        agents = datadir.agents_dir(self.data_dir)
        if not agents.is_dir():
            return []
        return sorted(p.name for p in agents.iterdir() if (p / AGENT_FILE).exists())

    def load(self, name: str) -> AgentRecord:
        """The record of ``name``. Raises ``FileNotFoundError`` when there is none, ``OSError``
        when it cannot be read, and ``ValueError``/``KeyError``/``TypeError`` when it is damaged."""
        directory = self._directory(name)
        if directory is None:
            raise FileNotFoundError(name)
        raw = json.loads((directory / AGENT_FILE).read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{AGENT_FILE} of {name!r} is not an object")
        return AgentRecord.from_dict(raw)

    def record_path(self, name: str) -> Path | None:
        directory = self._directory(name)
        return None if directory is None else directory / AGENT_FILE

    def exists(self, name: str) -> bool:
        """Whether anything is kept of ``name`` (its folder)."""
        directory = self._directory(name)
        return directory is not None and directory.exists()

    def save(self, record: AgentRecord) -> None:
        """Write ``record`` atomically (a temporary file renamed over the old one). Raises
        ``OSError``; a failed save leaves the previous record as it was."""
        directory = self._directory(record.name)
        if directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps(record.to_dict(), indent=1).encode()
        files.replace(directory / AGENT_FILE, data, durable=self.durable)

    def open_output(self, name: str, header: bytes, max_bytes: int = 0, backups: int = 0) -> OutputLog | None:
        """``output.log`` of ``name`` for appending, rotated past ``max_bytes`` with ``backups``
        kept (see :mod:`supervisor.outputlog`), with ``header`` written first; None when nothing
        is kept. Never raises (see :class:`~supervisor.outputlog.OutputLog`); the run closes it."""
        directory = self._directory(name)
        if directory is None:
            return None
        output = OutputLog(directory / OUTPUT_FILE, name, self.health, max_bytes, backups)
        output.write(header)
        return output

    def output_files(self, name: str) -> list[Path]:
        """The output kept of ``name``, oldest first (its rotated files, then ``output.log``)."""
        directory = self._directory(name)
        return [] if directory is None else kept_files(directory / OUTPUT_FILE)

    def remove(self, name: str) -> None:
        """Delete everything kept of ``name``: its record, its output, its folder."""
        directory = self._directory(name)
        if directory is not None and directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
