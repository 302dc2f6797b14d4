"""One run's output, from raw PTY bytes to the events it gives (pure: no I/O, no clock, no hub).

:class:`OutputPipeline` is where a byte from the PTY goes after :mod:`supervisor.process` has
read it, and before :mod:`supervisor.eventlog` gives the results ids::

    bytes -> TerminalResponder (answers to the program's queries)  -> replies
          -> LineSplitter (lines as a person saw them)
          -> EchoTracker  (which end of a line is typed input coming back)
          -> ExtractorSet (facts; a match without a value takes the next line's)
                                                                    -> ("log" | "extraction", data)

``feed(data, now)`` returns ``(replies, events)``: the bytes to write back to the terminal, and
``(type, data)`` pairs in the order they happened. ``now`` is a monotonic clock reading, used
only to expire echo expectations. The same bytes cut into any chunks give the same events.

A full-screen program's output is not fed here but to the agent's virtual screen (its lines
would only be the fragments it redraws); the extractors then read the screen's settled lines
(:meth:`OutputPipeline.extract_screen`), under the same caps and counts.

Not safe to share between threads; one pipeline per run of an agent.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import events
from .echo import EchoTracker
from .extractors import MAX_EXTRACTIONS_PER_LINE, MAX_MATCHES_PER_LINE, Extraction, ExtractorSet
from .lines import Line, LineSplitter
from .screen.emulator import ScreenLine
from .terminal import TerminalResponder

__all__ = ["Output", "OutputPipeline"]

#: One thing the pipeline produced: an event type and its data, not yet stored or numbered.
Output = tuple[str, dict[str, Any]]


class OutputPipeline:
    """Turns the output of run ``run`` into ``log`` and ``extraction`` events."""

    __slots__ = ("_awaiting", "_echo", "_per_extractor", "_per_line", "_responder", "_shown_partial", "_splitter",
                 "extractions", "extractions_cut", "extractors", "lines", "run")

    def __init__(self, run: int, extractors: ExtractorSet, *, max_line_length: int = 65536,
                 cols: int = 120, rows: int = 40, max_matches_per_line: int = MAX_MATCHES_PER_LINE,
                 max_extractions_per_line: int = MAX_EXTRACTIONS_PER_LINE) -> None:
        self.run = run
        self.extractors = extractors
        # The extraction caps: per extractor and per line (amplification is bounded, and said so).
        self._per_extractor = max_matches_per_line
        self._per_line = max_extractions_per_line
        self._splitter = LineSplitter(max_line_length, cols, rows)
        self._echo = EchoTracker()
        self._responder = TerminalResponder(cols, rows)
        self._shown_partial: int | None = None  # line_num of a partial line not yet completed
        # Matches without a value, waiting for the next non-empty line to give them one.
        self._awaiting: list[tuple[Extraction, int]] = []
        #: Final lines and extractions so far (the ``complete`` event and the API count them).
        self.lines = 0
        self.extractions = 0
        #: Extractors whose matches on a line the caps cut (each counts once per line).
        self.extractions_cut = 0

    @property
    def lines_emitted(self) -> int:
        """Final lines the splitter has handed out (cut pieces count one each)."""
        return self._splitter.lines_emitted

    def feed(self, data: bytes, now: float) -> tuple[bytes, list[Output]]:
        """The replies to write back for ``data`` and the events it completes."""
        reply = self._responder.feed(data)
        out: list[Output] = []
        for line in self._splitter.feed(data):
            self._line(line, now, out)
        return reply, out

    def partial(self, now: float) -> list[Output]:
        """The pending line as a partial ``log`` event, if it is visible and changed since the
        last call (see :meth:`~supervisor.lines.LineSplitter.partial`), and lines being redrawn
        in place as they are now."""
        out: list[Output] = []
        for redrawn in self._splitter.redrawn():
            self._line(redrawn, now, out)
        line = self._splitter.partial()
        if line is not None:
            self._line(line, now, out)
        return out

    def pending(self) -> tuple[int, str] | None:
        """``(line_num, plain text)`` of the line that waits for its newline, if one is visible."""
        text = self._splitter.pending()
        return None if text is None else (self._splitter.lines_emitted + 1, text)

    def finish(self, now: float) -> list[Output]:
        """The end of the output: the pending line, values that never came (as ``""``), and the
        retraction of a partial line that was shown and then erased (a spinner)."""
        out: list[Output] = []
        for line in self._splitter.finish():
            self._line(line, now, out)
        for found, line_num in self._awaiting:  # the run ended before a value came
            self._extraction(found, line_num, "", None, out)
        self._awaiting = []
        if self._shown_partial is not None:
            # Take it back so that consumers do not keep showing it.
            out.append((events.LOG, {"line": "", "line_num": self._shown_partial, "stream": "stdout",
                                     "run": self.run, "partial": True}))
            self._shown_partial = None
        return out

    def expect_echo(self, text: str, now: float) -> None:
        """``text`` was typed into a terminal that echoes: its echo is not the agent's output."""
        self._echo.expect(text, now)

    def resize(self, cols: int, rows: int) -> None:
        self._responder.resize(cols, rows)
        self._splitter.resize(cols, rows)

    # -- one line ----------------------------------------------------------------------------

    def _line(self, line: Line, now: float, out: list[Output]) -> None:
        echoed = 0 if line.partial or line.redraw else self._echo.match(line, now)
        data: dict[str, Any] = {"line": line.text, "line_num": line.line_num, "stream": "stdout", "run": self.run}
        if line.plain is not line.text and line.plain != line.text:
            data["plain"] = line.plain
        if line.partial:
            data["partial"] = True
        if line.continuation:
            data["continuation"] = True
        if line.redraw:
            data["redraw"] = True
        if echoed:
            data["echo"] = echoed
        out.append((events.LOG, data))
        if line.partial:
            self._shown_partial = line.line_num
            return
        if line.redraw:
            # Drawn again in place: not one more line, and no value for an earlier match; its
            # new text may hold new facts.
            self._extract(line.plain, line.line_num, out)
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
                self._extraction(found, line_num, text.strip(), line.line_num, out)
        # _extract, inlined: this is the per-line path of every agent (a call costs ~5% of it).
        if not text or not len(self.extractors):
            return
        scan = self.extractors.scan_capped(text, self._per_extractor, self._per_line)
        self.extractions_cut += scan.cut
        for found in scan.found:
            if found.value:
                self._extraction(found, line.line_num, found.value, None, out)
            else:
                self._awaiting.append((found, line.line_num))

    def extract_screen(self, lines: Iterable[ScreenLine], seq: int) -> list[Output]:
        """``extraction`` events from lines of a settled screen (``seq``: its change number):
        ``source: "screen"`` and the ``row`` (0-based) and ``rows`` a line takes, instead of a
        ``line_num``. A match without a value gives nothing here (there is no next line)."""
        out: list[Output] = []
        if not len(self.extractors):
            return out
        for line in lines:
            scan = self.extractors.scan_capped(line.text, self._per_extractor, self._per_line)
            self.extractions_cut += scan.cut
            for found in scan.found:
                if not found.value:
                    continue
                self.extractions += 1
                out.append((events.EXTRACTION, {
                    "name": found.name, "value": found.value, "groups": found.groups, "run": self.run,
                    "source": "screen", "row": line.first, "rows": line.last - line.first + 1, "seq": seq,
                }))
        return out

    def _extract(self, text: str, line_num: int, out: list[Output]) -> None:
        if not text or not len(self.extractors):
            return
        scan = self.extractors.scan_capped(text, self._per_extractor, self._per_line)
        self.extractions_cut += scan.cut
        for found in scan.found:
            if found.value:
                self._extraction(found, line_num, found.value, None, out)
            else:
                self._awaiting.append((found, line_num))

    def _extraction(self, found: Extraction, line_num: int, value: str, value_line: int | None,
                    out: list[Output]) -> None:
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
        out.append((events.EXTRACTION, data))
