"""A named agent: its definition, its runs one after another, and the events they produce.

Each run is an :class:`~supervisor.process.AgentProcess`; its output goes through the terminal
responder (answers a full-screen program's queries), the line splitter, the echo filter and the
extractors, and comes out as ``log`` and ``extraction`` events. Every change of state goes
through :meth:`Agent._change_state`, which checks the edge against
:data:`~supervisor.states.TRANSITIONS`, saves the agent and emits the ``state`` event. When the
agent is done for good (no restart follows), it emits ``complete``.

Not thread-safe: all methods run in greenlets of one hub. Output handling runs in the run's
reader greenlet and never blocks.
"""
from __future__ import annotations

import json
import logging
import os
import time
from io import BufferedWriter
from pathlib import Path
from typing import Any

import gevent

from . import events
from .config import Config
from .echo import EchoTracker
from .eventlog import EventLog
from .exceptions import AgentNotRunning, SupervisorError
from .extractors import Extraction, ExtractorSet, compile_extractors
from .lines import Line, LineSplitter
from .process import AgentProcess, ExitStatus, default_env
from .spec import AgentSpec
from .states import ACTIVE_STATES, RUNNING_STATES, TRANSITIONS, AgentState
from .terminal import TerminalResponder

log = logging.getLogger(__name__)

AGENT_FILE = "agent.json"
OUTPUT_FILE = "output.log"


class Agent:
    """One named agent and its current (or last) run."""

    def __init__(
        self,
        spec: AgentSpec,
        eventlog: EventLog,
        config: Config,
        extractors: ExtractorSet | None = None,
    ) -> None:
        self.spec = spec
        self.eventlog = eventlog
        self.config = config
        self.extractors = extractors if extractors is not None else compile_extractors(spec.extractors)
        self.created_at = time.time()
        self.state: AgentState | None = None
        self.run = 0  # number of the current or last run, 1-based
        self.restarts = 0  # restarts in a row by the policy, reset by a user's start
        self.pid: int | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.exit_code: int | None = None
        self.signal: str | None = None
        self.reason = ""
        self.lines = 0
        self.extractions = 0
        # Extractors whose matches on a line the caps cut (max_matches_per_line and
        # max_extractions_per_line), this run: amplification is bounded, and said so.
        self.extractions_cut = 0
        self._process: AgentProcess | None = None
        self._splitter: LineSplitter | None = None
        self._echo: EchoTracker | None = None
        self._responder: TerminalResponder | None = None
        self._output: BufferedWriter | None = None
        self._files_due = False  # a write of output.log and the history file is scheduled
        self._stop_requested = False
        self._restart_requested = False
        self._partial_timer: gevent.Greenlet[..., Any] | None = None
        self._shown_partial: int | None = None  # line_num of a partial line not yet completed
        # Matches without a value, waiting for the next non-empty line to give them one.
        self._awaiting: list[tuple[Extraction, int]] = []
        self._backoff: gevent.Greenlet[..., Any] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def directory(self) -> Path | None:
        return self.eventlog.agent_directory(self.name)

    @property
    def active(self) -> bool:
        """Running, or waiting to run again."""
        return self.state in ACTIVE_STATES

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else time.time()
        return round(max(0.0, end - self.started_at), 3)

    # -- state -----------------------------------------------------------------------------

    def _change_state(self, new: AgentState, reason: str = "", **extra: Any) -> None:
        """The one place a state changes: check the edge, record it, save, emit ``state``."""
        old = self.state
        if new not in TRANSITIONS[old]:
            raise RuntimeError(f"agent {self.name!r}: illegal state change {old} -> {new}")
        self.state = new
        self.reason = reason
        log.info("agent %s: %s -> %s%s", self.name, old.value if old else "new", new.value,
                 f" ({reason})" if reason else "")
        self.save()
        data: dict[str, Any] = {
            "state": new.value,
            "previous": old.value if old is not None else None,
            "run": self.run,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "reason": reason,
        }
        data.update(extra)
        self._emit(events.STATE, data)

    def _emit(self, type: str, data: dict[str, Any]) -> events.Event:
        return self.eventlog.append(self.name, type, data)

    def _complete(self) -> None:
        """Nothing more will happen unless a user starts the agent again: say so, once."""
        self._emit(
            events.COMPLETE,
            {
                "state": self.state.value if self.state else None,
                "run": self.run,
                "exit_code": self.exit_code,
                "signal": self.signal,
                "duration_s": self.duration_s,
                "lines": self.lines,
                "extractions": self.extractions,
                "reason": self.reason,
            },
        )
        self.eventlog.flush()

    # -- runs ------------------------------------------------------------------------------

    def start(self, reason: str = "started") -> None:
        """Begin a new run. A failure to spawn becomes the ``failed`` state, not an exception.

        Raises :class:`~supervisor.exceptions.AgentRunning`-style errors only through the
        registry; here an agent that is already running is a programming error.
        """
        if self.state in RUNNING_STATES:
            raise RuntimeError(f"agent {self.name!r} is already running")
        if self._backoff is not None:
            self._backoff.kill(block=False)
            self._backoff = None
        self.run += 1
        self._stop_requested = self._restart_requested = False
        self.pid = self.exit_code = self.signal = None
        self.started_at, self.ended_at = time.time(), None
        self.lines = self.extractions = self.extractions_cut = 0
        self._shown_partial = None
        self._awaiting = []
        spec = self.spec
        self._splitter = LineSplitter(self.config.max_line_length)
        self._echo = EchoTracker()
        self._responder = TerminalResponder(spec.cols, spec.rows)
        self._change_state(AgentState.STARTING, reason, command=spec.command)
        try:
            process = AgentProcess(
                spec.command,
                cwd=spec.cwd,
                env=default_env(spec.env, spec.cols, spec.rows),
                cols=spec.cols,
                rows=spec.rows,
                on_output=self._on_output,
                on_exit=self._on_exit,
            )
            process.start()
        except SupervisorError as exc:
            self.ended_at = time.time()
            self._emit(events.ERROR, {"code": exc.code, "message": str(exc), "run": self.run})
            self._change_state(AgentState.FAILED, str(exc))
            self._complete()
            return
        self._process = process
        self.pid = process.pid
        self._open_output()
        self._change_state(AgentState.RUNNING, reason)

    def _open_output(self) -> None:
        directory = self.directory
        if directory is None:
            return
        self._output = open(directory / OUTPUT_FILE, "ab")  # noqa: SIM115 - closed at run end
        header = f"\n--- run {self.run} pid {self.pid} at {events.rfc3339(time.time())} ---\n"
        self._output.write(header.encode())

    def _on_output(self, data: bytes) -> None:
        # Runs in the reader greenlet for every chunk: nothing here may block.
        if self._output is not None:
            self._output.write(data)
        assert self._splitter is not None and self._responder is not None
        reply = self._responder.feed(data)
        if reply and self._process is not None:
            self._process.reply(reply)
        for line in self._splitter.feed(data):
            self._emit_line(line)
        if self._partial_timer is None:
            self._partial_timer = gevent.spawn_later(
                self.config.partial_line_s, self._show_partial, self._splitter.lines_emitted + 1
            )
        if not self._files_due:
            # Write the files after the subscribers' work, not before: the hub runs callbacks in
            # the order they were scheduled, and the streams scheduled their flush when the
            # first line was published. The live view then never waits on the disk.
            self._files_due = True
            gevent.get_hub().loop.run_callback(self._write_files)

    def _write_files(self) -> None:
        # A hub callback: must not raise, and a full disk must not stop the lines.
        self._files_due = False
        try:
            self.eventlog.flush()
            if self._output is not None:
                self._output.flush()
        except OSError as exc:
            log.warning("agent %s: writing its output to disk failed: %s", self.name, exc)

    def _show_partial(self, line_num: int) -> None:
        """Line ``line_num`` has waited ``partial_line_s`` without its newline: show it as is."""
        self._partial_timer = None
        splitter = self._splitter
        if splitter is None:
            return
        if splitter.lines_emitted + 1 != line_num:
            # Lines were completed since this wait began; the one pending now gets its own wait.
            self._partial_timer = gevent.spawn_later(
                self.config.partial_line_s, self._show_partial, splitter.lines_emitted + 1
            )
            return
        line = splitter.partial()
        if line is not None:
            self._emit_line(line)
            self.eventlog.flush()

    def _emit_line(self, line: Line) -> None:
        echoed = 0
        if not line.partial and self._echo is not None:
            echoed = self._echo.match(line, time.monotonic())
        data: dict[str, Any] = {"line": line.text, "line_num": line.line_num, "stream": "stdout", "run": self.run}
        if line.plain is not line.text and line.plain != line.text:
            data["plain"] = line.plain
        if line.partial:
            data["partial"] = True
        if line.continuation:
            data["continuation"] = True
        if echoed:
            data["echo"] = echoed
        self._emit(events.LOG, data)
        if line.partial:
            self._shown_partial = line.line_num
            return
        if line.line_num == self._shown_partial:
            self._shown_partial = None
        self.lines += 1
        text = line.plain[:-echoed] if echoed else line.plain
        if self._awaiting and text.strip():
            # Matches that had no value take this line as theirs: codex prints "tokens used"
            # and the number on the line after it.
            awaiting, self._awaiting = self._awaiting, []
            for found, line_num in awaiting:
                self._emit_extraction(found, line_num, text.strip(), value_line=line.line_num)
        if not text or not len(self.extractors):
            return
        scan = self.extractors.scan_capped(
            text, self.config.max_matches_per_line, self.config.max_extractions_per_line
        )
        self.extractions_cut += scan.cut
        for found in scan.found:
            if found.value:
                self._emit_extraction(found, line.line_num, found.value)
            else:
                self._awaiting.append((found, line.line_num))

    def _emit_extraction(self, found: Extraction, line_num: int, value: str, value_line: int | None = None) -> None:
        self.extractions += 1
        data: dict[str, Any] = {
            "name": found.name,
            "value": value,
            "groups": found.groups,
            "line_num": line_num,
            "run": self.run,
        }
        if value_line is not None:
            data["value_line"] = value_line
        self._emit(events.EXTRACTION, data)

    def _on_exit(self, status: ExitStatus) -> None:
        # Runs in the reader greenlet once the child is reaped and its output drained.
        if self._partial_timer is not None:
            self._partial_timer.kill(block=False)
            self._partial_timer = None
        if self._splitter is not None:
            for line in self._splitter.finish():
                self._emit_line(line)
        for found, line_num in self._awaiting:  # the run ended before a value came
            self._emit_extraction(found, line_num, "")
        self._awaiting = []
        if self._shown_partial is not None:
            # A partial line that never got its newline and was erased (a spinner): take it back
            # so that consumers do not keep showing it.
            self._emit(events.LOG, {"line": "", "line_num": self._shown_partial, "stream": "stdout",
                                    "run": self.run, "partial": True})
            self._shown_partial = None
        if self._output is not None:
            self._output.close()
            self._output = None
        process = self._process
        self._process = None
        self.exit_code, self.signal = status.exit_code, status.signal
        self.ended_at = process.ended_at if process is not None else time.time()
        if self._stop_requested:
            reason = "stopped"
        elif status.signal:
            reason = f"killed by {status.signal}"
        else:
            reason = f"exited with code {status.exit_code}"
        self._change_state(AgentState.EXITED, reason)
        if self._restart_requested:
            self.restarts = 0
            self.start("restarted by request")
            return
        policy = self.spec.restart
        wants = policy.mode == "always" or (policy.mode == "on-failure" and not status.success)
        if wants and not self._stop_requested and self.restarts < policy.max_restarts:
            self.restarts += 1
            delay = policy.delay(self.restarts)
            self._change_state(
                AgentState.BACKOFF,
                f"{policy.mode}: {reason}; restart {self.restarts} of {policy.max_restarts} in {delay:g} s",
                restart_in_s=delay,
                attempt=self.restarts,
            )
            self._backoff = gevent.spawn_later(delay, self._restart_after_backoff)
            return
        self._complete()

    def _restart_after_backoff(self) -> None:
        self._backoff = None
        if self.state is AgentState.BACKOFF:
            self.start(f"restart {self.restarts} by policy {self.spec.restart.mode}")

    # -- control ---------------------------------------------------------------------------

    def stop(self, grace: float | None = None) -> None:
        """Stop the agent for good: SIGTERM its process group, SIGKILL after ``grace``.

        Blocks the calling greenlet until the run has ended (the API calls it in a greenlet of
        its own). Stopping an agent that is waiting to restart cancels the restart.
        """
        if self.state is AgentState.BACKOFF:
            if self._backoff is not None:
                self._backoff.kill(block=False)
                self._backoff = None
            self._change_state(AgentState.EXITED, "stopped while waiting to restart")
            self._complete()
            return
        process = self._process
        if process is None or self.state not in (AgentState.RUNNING, AgentState.STOPPING):
            return
        self._stop_requested = True
        if self.state is AgentState.RUNNING:
            self._change_state(AgentState.STOPPING, "stop requested")
        if grace is None:
            grace = self.spec.stop_grace_s if self.spec.stop_grace_s is not None else self.config.stop_grace_s
        process.stop(grace)

    def restart(self, grace: float | None = None) -> None:
        """End the current run (if any) and start a new one; no ``complete`` in between."""
        self.restarts = 0
        if self._process is not None and self.state in (AgentState.RUNNING, AgentState.STOPPING):
            self._restart_requested = True
            if self.state is AgentState.RUNNING:
                self._change_state(AgentState.STOPPING, "restart requested")
            grace = grace if grace is not None else (self.spec.stop_grace_s or self.config.stop_grace_s)
            self._process.stop(grace)
        else:
            self.start("restarted by request")

    def write(self, text: str) -> None:
        """Type ``text`` into the agent's terminal. Raises :class:`AgentNotRunning` without a run."""
        process = self._process
        if process is None or self.state not in (AgentState.RUNNING, AgentState.STOPPING):
            raise AgentNotRunning(f"agent {self.name!r} is not running ({self.state})")
        if self._echo is not None and process.echo_enabled():
            self._echo.expect(text, time.monotonic())
        try:
            process.write(text.encode("utf-8"))
        except OSError as exc:
            raise AgentNotRunning(f"agent {self.name!r} no longer takes input: {exc}") from exc

    def resize(self, cols: int, rows: int) -> None:
        """Change the terminal size of the current run (and of the runs after it)."""
        process = self._process
        if process is None:
            raise AgentNotRunning(f"agent {self.name!r} is not running ({self.state})")
        process.resize(cols, rows)
        if self._responder is not None:
            self._responder.resize(cols, rows)

    def wait(self, timeout: float | None = None) -> bool:
        """Block this greenlet until the agent is no longer active; False if ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.active:
            process = self._process
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if process is not None:
                process.wait(remaining if remaining is None else min(remaining, 0.5))
            else:
                gevent.sleep(0.01 if remaining is None else min(remaining, 0.01))
        return True

    # -- persistence -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """What the API shows about the agent."""
        return {
            "name": self.name,
            "command": self.spec.command,
            "profile": self.spec.profile,
            "cwd": self.spec.cwd,
            "state": self.state.value if self.state else None,
            "reason": self.reason,
            "run": self.run,
            "pid": self.pid,
            "started_at": events.rfc3339(self.started_at) if self.started_at else None,
            "ended_at": events.rfc3339(self.ended_at) if self.ended_at else None,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "duration_s": self.duration_s,
            "lines": self.lines,
            "extractions": self.extractions,
            "extractions_cut": self.extractions_cut,
            "restarts": self.restarts,
            "restart": self.spec.restart.mode,
            "cols": self._process.cols if self._process else self.spec.cols,
            "rows": self._process.rows if self._process else self.spec.rows,
            "extractors": self.spec.extractors,
            "last_event_id": self.eventlog.last_id(self.name),
        }

    def save(self) -> None:
        """Write the definition and last known state to ``agent.json`` (atomically)."""
        directory = self.directory
        if directory is None:
            return
        record = {
            "spec": self.spec.to_dict(),
            "state": self.state.value if self.state else None,
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
        }
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (AGENT_FILE + ".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, directory / AGENT_FILE)

    def _recount_last_run(self) -> None:
        """Counts of a run that ended with the supervisor, from its events in history (the
        saved record only has them as of its last state change)."""
        lines = extractions = 0
        for event in reversed(self.eventlog.history(self.name).last(self.config.history_size)):
            if event.data.get("run") != self.run:
                break
            if event.type == events.LOG and not event.data.get("partial"):
                lines = max(lines, int(event.data.get("line_num") or 0))
            elif event.type == events.EXTRACTION:
                extractions += 1
        self.lines = max(self.lines, lines)
        self.extractions = max(self.extractions, extractions)

    @classmethod
    def restore(cls, record: dict[str, Any], eventlog: EventLog, config: Config) -> Agent:
        """Rebuild an agent saved by a previous supervisor. One that was live then is ``lost``:
        nobody watched how it ended."""
        agent = cls(AgentSpec.from_dict(record["spec"]), eventlog, config)
        agent.run = int(record.get("run") or 0)
        agent.pid = record.get("pid")
        agent.started_at = record.get("started_at")
        agent.ended_at = record.get("ended_at")
        agent.exit_code = record.get("exit_code")
        agent.signal = record.get("signal")
        agent.reason = record.get("reason") or ""
        agent.lines = int(record.get("lines") or 0)
        agent.extractions = int(record.get("extractions") or 0)
        agent.extractions_cut = int(record.get("extractions_cut") or 0)
        agent.created_at = record.get("created_at") or time.time()
        state = record.get("state")
        agent.state = AgentState(state) if state else None
        if agent.state in ACTIVE_STATES:
            agent._recount_last_run()
            # RUNNING -> LOST: the supervisor died while the agent ran; its fate is unknown.
            agent._change_state(AgentState.LOST, "the supervisor stopped while the agent was running")
            agent._complete()
        return agent
