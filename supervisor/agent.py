"""A named agent's lifecycle: its runs one after another, its state, its restart policy.

Each run is an :class:`~supervisor.process.AgentProcess`; what it prints goes through the run's
:class:`~supervisor.pipeline.OutputPipeline` (pure), and the ``log`` and ``extraction`` events
that come out are appended to the event log. Every change of state goes through
:meth:`Agent._change_state`, which checks the edge against :data:`~supervisor.states.TRANSITIONS`,
saves the agent's record and emits the ``state`` event. When the agent is done for good (no
restart follows), it emits ``complete``.

What is not here: turning bytes into events (:mod:`supervisor.pipeline`), which processes are
the run's and ending them (the agent's :class:`~supervisor.containment.custody.Custody`),
reading and writing ``agent.json`` (:mod:`supervisor.store`), the agent's JSON in the API
(``api/shapes.py``).

Not thread-safe: all methods run in greenlets of one hub. Output handling runs in the run's
reader greenlet and never blocks.

Storage never stops an agent: the event log, ``output.log`` and ``agent.json`` report a write
that fails to the storage health and go on (see :mod:`supervisor.health`), so a full disk
costs what could not be written, never a run stuck in ``running`` or ``stopping``.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import gevent

from . import events
from .config import Config
from .containment import Containment, RunScope
from .containment.custody import Custody
from .containment.recovery import Recovered
from .eventlog import EventLogBackend
from .exceptions import AgentNotRunning, InvalidCommand, SpawnError, SupervisorError
from .extractors import ExtractorSet, compile_extractors
from .inputwait import InputWait
from .outputlog import OutputLog
from .pipeline import Output, OutputPipeline
from .process import AgentProcess, ExitStatus, default_env
from .screen.emulator import ScreenLine
from .screen.live import LiveScreen
from .spec import AgentSpec
from .states import ACTIVE_STATES, RUNNING_STATES, TRANSITIONS, AgentState
from .store import AgentRecord, AgentStore

log = logging.getLogger(__name__)


class Agent:
    """One named agent and its current (or last) run."""

    def __init__(
        self,
        spec: AgentSpec,
        eventlog: EventLogBackend,
        config: Config,
        extractors: ExtractorSet | None = None,
        store: AgentStore | None = None,
        containment: Containment | None = None,
    ) -> None:
        self.spec = spec
        self.eventlog = eventlog
        self.config = config
        self.store = store if store is not None else AgentStore(None)
        self.custody = Custody(containment if containment is not None else Containment("group"), spec.name)
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
        # max_extractions_per_line), this run, one per extractor and line (how many matches is
        # not known: counting them is the unbounded work the caps prevent).
        self.extractions_cut = 0
        #: Cuts counted by this server process over all of this agent's runs (the stats' total).
        self.cuts_counted = 0
        # Lines and extractions of the runs before the current one, since this server started
        # (the /metrics counters: the current run's counts start at 0 with each run).
        self._earlier_lines = self._earlier_extractions = 0
        #: Where the definition came from ("api" or "config") and, for a config agent, whether
        #: serve and reload start it; ``resume``: start it again when the next server starts.
        self.origin = "api"
        self.autostart = True
        self.resume = False
        #: Whether the current run waits at a prompt (see supervisor.inputwait).
        self.input_wait = InputWait(config.input_wait_s)
        self._input_timer: gevent.Greenlet[..., Any] | None = None
        self._process: AgentProcess | None = None
        self._pipeline: OutputPipeline | None = None
        self._output: OutputLog | None = None
        self._stop_requested = False
        self._restart_requested = False
        self._partial_timer: gevent.Greenlet[..., Any] | None = None
        self._backoff: gevent.Greenlet[..., Any] | None = None
        #: The virtual screen of the current (or last) run (see supervisor.screen.live).
        self.screen = LiveScreen(spec.screen, self._on_screen_settled, config.screen_settle_s,
                                 worker=config.screen_worker, on_reply=self._screen_reply,
                                 on_failure=self._screen_failed)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def active(self) -> bool:
        """Running, or waiting to run again."""
        return self.state in ACTIVE_STATES

    @property
    def size(self) -> tuple[int, int]:
        """The terminal's (cols, rows): the current run's, else the definition's."""
        process = self._process
        return (process.cols, process.rows) if process is not None else (self.spec.cols, self.spec.rows)

    @property
    def leftovers(self) -> str:
        """What the end of a run's main process does with the rest: the agent's own setting,
        else the server's."""
        return self.spec.leftovers or self.config.leftovers

    def record(self) -> AgentRecord:
        """The agent's definition and state now, as plain values (saved, and shown by the API)."""
        cols, rows = self.size
        return AgentRecord(
            spec=self.spec,
            state=self.state.value if self.state else None,
            run=self.run,
            pid=self.pid,
            started_at=self.started_at,
            ended_at=self.ended_at,
            exit_code=self.exit_code,
            signal=self.signal,
            reason=self.reason,
            lines=self.lines,
            extractions=self.extractions,
            extractions_cut=self.extractions_cut,
            created_at=self.created_at,
            restarts=self.restarts,
            cols=cols,
            rows=rows,
            processes=self.custody.processes(self.leftovers),
            origin=self.origin,
            autostart=self.autostart,
            resume=self.resume,
            waiting_input=self.input_wait.waiting,
            prompt=self.input_wait.prompt,
        )

    @property
    def lines_total(self) -> int:
        """Complete lines of every run since this server started (a counter that never goes
        down, unlike ``lines``, which counts the current run)."""
        return self._earlier_lines + self.lines

    @property
    def extractions_total(self) -> int:
        return self._earlier_extractions + self.extractions

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

    def _emit(self, type: str, data: dict[str, Any]) -> None:
        self.eventlog.append(self.name, type, data)

    def _emit_all(self, outputs: list[Output]) -> None:
        self.eventlog.append_many(self.name, outputs)

    def _complete(self) -> None:
        """Nothing more will happen unless a user starts the agent again: say so, once."""
        self._emit(
            events.COMPLETE,
            {
                "state": self.state.value if self.state else None,
                "run": self.run,
                "exit_code": self.exit_code,
                "signal": self.signal,
                "duration_s": self.record().duration_s(time.time()),
                "lines": self.lines,
                "extractions": self.extractions,
                "reason": self.reason,
                "ended": self.custody.ended,
                "kept": self.custody.kept,
            },
        )

    def save(self) -> None:
        """Write the agent's record (``agent.json``), atomically. A failure is reported to the
        storage health, never raised: the state it records changes anyway."""
        health = self.store.health
        try:
            self.store.save(self.record())
        except OSError as exc:
            health.failed(self.name, "record", self.store.record_path(self.name) or "", exc, self.save)
        else:
            if health.failing(self.name):
                health.recovered(self.name, "record")

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
        self.resume = False
        self.pid = self.exit_code = self.signal = None
        self.started_at, self.ended_at = time.time(), None
        self._earlier_lines += self.lines
        self._earlier_extractions += self.extractions
        self.lines = self.extractions = self.extractions_cut = 0
        self.input_wait.reset()
        spec, config = self.spec, self.config
        self._pipeline = OutputPipeline(self.run, self.extractors, max_line_length=config.max_line_length,
                                        cols=spec.cols, rows=spec.rows,
                                        max_matches_per_line=config.max_matches_per_line,
                                        max_extractions_per_line=config.max_extractions_per_line)
        self.screen.start_run(self.run, spec.cols, spec.rows, spec.screen)
        self._change_state(AgentState.STARTING, reason, command=spec.command)
        scope: RunScope | None = None
        try:
            if not spec.command:
                raise InvalidCommand(f"agent {self.name!r} has no command (its agent.json could not be read);"
                                     " define it again")
            try:
                scope = self.custody.begin(self.run, self.leftovers, self.grace_s())
            except OSError as exc:
                raise SpawnError(f"could not make a cgroup for the run: {exc.strerror or exc}") from exc
            process = AgentProcess(
                spec.command,
                cwd=spec.cwd,
                env=default_env(spec.env, spec.cols, spec.rows),
                cols=spec.cols,
                rows=spec.rows,
                on_output=self._on_output,
                on_exit=self._on_exit,
                scope=scope,
            )
            process.start()
        except SupervisorError as exc:
            if scope is not None:
                self.custody.finish(scope)
            self.ended_at = time.time()
            self._emit(events.ERROR, {"code": exc.code, "message": str(exc), "run": self.run})
            self._change_state(AgentState.FAILED, str(exc))
            self._complete()
            return
        self._process = process
        process.scope.persist = self.save  # the run's members changed: what a recovery would look for
        self.pid = process.pid
        header = f"\n--- run {self.run} pid {self.pid} at {events.rfc3339(time.time())} ---\n"
        self._output = self.store.open_output(self.name, header.encode(), config.output_log_max_bytes,
                                              config.output_log_backups)
        self._change_state(AgentState.RUNNING, reason)

    def _on_output(self, data: bytes) -> None:
        # Runs in the reader greenlet for every chunk: nothing here may block. output.log gets
        # the raw bytes at once (one write to the page cache); the events go to the event log,
        # whose commit writes them to history before any client sees them.
        if self._output is not None:
            self._output.write(data)
        pipeline = self._pipeline
        assert pipeline is not None
        now = time.monotonic()
        # A full-screen program's output is its screen's: as lines it would only be fragments
        # of redraws (its words in drawing order, wiped ones included). The screen shows it,
        # its settled text is a `screen` event, the extractors read that; its terminal queries
        # are answered with the screen's cursor. The pieces cut the chunk where it switches.
        for piece, full_screen in self.screen.pieces(data):
            if full_screen:
                reply = self.screen.feed(piece, answer=True)  # may wait for the screen
            else:
                reply, outputs = pipeline.feed(piece, now)
                if outputs:
                    self._emit_all(outputs)
                self.screen.feed(piece)
            if reply and self._process is not None:
                self._process.reply(reply)
        self._take_counts(pipeline)
        if self._partial_timer is None:
            self._partial_timer = gevent.spawn_later(
                self.config.partial_line_s, self._show_partial, pipeline.lines_emitted + 1
            )
        if self.input_wait.output(now):
            self._emit(events.WAITING_INPUT, {"waiting_input": False, "reason": "output", "run": self.run})
        if self._input_timer is None:
            self._input_timer = gevent.spawn_later(self.config.input_wait_s, self._check_input_wait)

    def _on_screen_settled(self, data: dict[str, Any], lines: list[ScreenLine]) -> None:
        """The screen settled with new text: its ``screen`` event, then what the extractors
        find on it if it shows a full-screen program (otherwise the lines have it already)."""
        self._emit(events.SCREEN, data)
        pipeline = self._pipeline
        if pipeline is not None and lines and data["alternate"]:
            self._emit_all(pipeline.extract_screen(lines, data["seq"]))
            self._take_counts(pipeline)

    def _screen_reply(self, data: bytes) -> None:
        """A screen worker's answer to a terminal query of the program."""
        if self._process is not None:
            self._process.reply(data)

    def _screen_failed(self, message: str, data: dict[str, Any]) -> None:
        """The screen's worker failed (and was replaced, or the screen given up): tell the user."""
        self._emit(events.ERROR, {**data, "message": message})

    def _take_counts(self, pipeline: OutputPipeline) -> None:
        """The run's counts, from its pipeline; its new cuts are added to :attr:`cuts_counted`."""
        self.cuts_counted += pipeline.extractions_cut - self.extractions_cut
        self.lines, self.extractions, self.extractions_cut = (
            pipeline.lines, pipeline.extractions, pipeline.extractions_cut)

    def _show_partial(self, line_num: int) -> None:
        """Line ``line_num`` has waited ``partial_line_s`` without its newline: show it as is."""
        self._partial_timer = None
        pipeline = self._pipeline
        if pipeline is None or self._process is None:
            return
        if pipeline.lines_emitted + 1 != line_num:
            # Lines were completed since this wait began; the one pending now gets its own wait.
            self._partial_timer = gevent.spawn_later(
                self.config.partial_line_s, self._show_partial, pipeline.lines_emitted + 1
            )
            return
        outputs = pipeline.partial(time.monotonic())
        if outputs:
            self._emit_all(outputs)

    def _check_input_wait(self) -> None:
        """No output for ``input_wait_s``: if a prompt is pending (text without its newline),
        the run waits for input; say so once (its partial line first, if not shown yet)."""
        self._input_timer = None
        pipeline = self._pipeline
        if pipeline is None or self._process is None or self.input_wait.waiting:
            return
        now = time.monotonic()
        remaining = self.input_wait.due_in(now)
        if remaining > 0:  # output came meanwhile: wait for the rest of the quiet time
            self._input_timer = gevent.spawn_later(remaining, self._check_input_wait)
            return
        pending = pipeline.pending()
        if pending is None:
            return
        line_num, prompt = pending
        outputs = pipeline.partial(now)
        if outputs:
            self._emit_all(outputs)
        self.input_wait.begin(prompt)
        self._emit(events.WAITING_INPUT, {"waiting_input": True, "prompt": prompt, "line_num": line_num,
                                          "run": self.run, "quiet_s": self.config.input_wait_s})

    def _end_input_wait(self, reason: str) -> None:
        if self.input_wait.clear():
            self._emit(events.WAITING_INPUT, {"waiting_input": False, "reason": reason, "run": self.run})

    def _on_exit(self, status: ExitStatus) -> None:
        # Runs in the reader greenlet once the child is reaped and its output drained. What
        # comes before the state change is guarded: a run must end in a final state with its
        # complete event, whatever failed on the way (storage failures do not even raise).
        if self._partial_timer is not None:
            self._partial_timer.kill(block=False)
            self._partial_timer = None
        if self._input_timer is not None:
            self._input_timer.kill(block=False)
            self._input_timer = None
        self._end_input_wait("exit")
        pipeline = self._pipeline
        if pipeline is not None:
            try:
                self._emit_all(pipeline.finish(time.monotonic()))
            except Exception:
                log.exception("agent %s: finishing the output of run %d failed", self.name, self.run)
            self._take_counts(pipeline)
        self.screen.finish()
        if self._output is not None:
            self._output.close()
            self._output = None
        process = self._process
        self._process = None
        self.exit_code, self.signal = status.exit_code, status.signal
        self.ended_at = process.ended_at if process is not None else time.time()
        if process is not None:
            self.custody.finish(process.scope)
        if self._stop_requested:
            reason = "stopped"
        elif status.signal:
            reason = f"killed by {status.signal}"
        else:
            reason = f"exited with code {status.exit_code}"
        self._change_state(AgentState.EXITED, reason, ended=self.custody.ended, kept=self.custody.kept)
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

    def grace_s(self, grace: float | None = None) -> float:
        """The stop grace period: ``grace`` if given, else the agent's own, else the config's.
        A grace of 0 is a grace of 0 (SIGKILL at once), never "use the default"."""
        if grace is not None:
            return grace
        if self.spec.stop_grace_s is not None:
            return self.spec.stop_grace_s
        return self.config.stop_grace_s

    def stop(self, grace: float | None = None) -> None:
        """Stop the agent for good: SIGTERM every process of its run, SIGKILL what is left after
        :meth:`grace_s`.

        Blocks the calling greenlet until the run has ended (the API calls it in a greenlet of
        its own). Stopping an agent that is waiting to restart cancels the restart; stopping one
        with no live run ends what its last run left running (kept leftovers, what a crashed
        supervisor left of a lost run).
        """
        if self.state is AgentState.BACKOFF:
            if self._backoff is not None:
                self._backoff.kill(block=False)
                self._backoff = None
            # BACKOFF -> EXITED: stopped by the user while waiting to restart.
            self._change_state(AgentState.EXITED, "stopped while waiting to restart")
            self._complete()
            return
        process = self._process
        if process is None or self.state not in (AgentState.RUNNING, AgentState.STOPPING):
            ended = self.custody.end_remains(self.grace_s(grace), lost=self.state is AgentState.LOST)
            if ended and self.state is AgentState.LOST:
                # LOST -> EXITED: what the lost run left running has been ended.
                self._change_state(AgentState.EXITED, f"stopped: ended {ended} processes left by run {self.run}",
                                   ended=ended)
            return
        self._stop_requested = True
        if self.state is AgentState.RUNNING:
            self._change_state(AgentState.STOPPING, "stop requested")
        process.stop(self.grace_s(grace))

    def restart(self, grace: float | None = None) -> None:
        """End the current run (if any) and start a new one; no ``complete`` in between."""
        self.restarts = 0
        process = self._process
        if process is not None and self.state in (AgentState.RUNNING, AgentState.STOPPING):
            self._restart_requested = True
            if self.state is AgentState.RUNNING:
                self._change_state(AgentState.STOPPING, "restart requested")
            process.stop(self.grace_s(grace))
        else:
            self.start("restarted by request")

    def write(self, text: str) -> None:
        """Type ``text`` into the agent's terminal. Raises :class:`AgentNotRunning` without a run."""
        process = self._process
        if process is None or self.state not in (AgentState.RUNNING, AgentState.STOPPING):
            raise AgentNotRunning(f"agent {self.name!r} is not running ({self.state})")
        if self._pipeline is not None and process.echo_enabled():
            self._pipeline.expect_echo(text, time.monotonic())
        self._end_input_wait("input")
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
        if self._pipeline is not None:
            self._pipeline.resize(cols, rows)
        self.screen.resize(cols, rows)

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

    # -- a previous supervisor's agents ----------------------------------------------------

    @classmethod
    def restore(cls, record: AgentRecord, eventlog: EventLogBackend, config: Config,
                store: AgentStore | None = None, containment: Containment | None = None,
                recovered: Recovered | None = None) -> Agent:
        """Rebuild an agent saved by a previous supervisor. One that was live then is ``lost``:
        nobody watched how it ended; ``recovered`` says what was found (and ended) of its run."""
        agent = cls(record.spec, eventlog, config, store=store, containment=containment)
        agent.run = record.run
        agent.pid = record.pid
        agent.started_at = record.started_at
        agent.ended_at = record.ended_at
        agent.exit_code = record.exit_code
        agent.signal = record.signal
        agent.reason = record.reason
        agent.lines = record.lines
        agent.extractions = record.extractions
        agent.extractions_cut = record.extractions_cut
        agent.created_at = record.created_at or time.time()
        agent.origin, agent.autostart, agent.resume = record.origin, record.autostart, record.resume
        agent.state = AgentState(record.state) if record.state else None
        if record.processes is not None:
            agent.custody.ended, agent.custody.kept = record.processes.ended, record.processes.kept
        if agent.state in ACTIVE_STATES:
            agent._recount_last_run()
            found = agent.custody.restore(record.processes, recovered)
            reason = "the supervisor stopped while the agent was running"
            if found["ended"] or found["kept"]:
                reason += f"; {found['ended']} of its processes ended, {found['kept']} kept"
            # RUNNING -> LOST: the supervisor died while the agent ran; its fate is unknown.
            agent._change_state(AgentState.LOST, reason, **found)
            agent._complete()
        return agent

    def _recount_last_run(self) -> None:
        """Counts of a run that ended with the supervisor, from its events in history (the
        saved record only has them as of its last state change)."""
        lines = extractions = 0
        for event in reversed(self.eventlog.last_events(self.name, self.config.history_size)):
            if event.data.get("run") != self.run:
                break
            if event.type == events.LOG and not event.data.get("partial"):
                lines = max(lines, int(event.data.get("line_num") or 0))
            elif event.type == events.EXTRACTION:
                extractions += 1
        self.lines = max(self.lines, lines)
        self.extractions = max(self.extractions, extractions)
