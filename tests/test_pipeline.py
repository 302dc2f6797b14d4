"""The output pipeline without a PTY: bytes in any chunks -> replies and events.

Like the line splitter's tests, every case is fed whole and in every chunk size from 1 to 7
bytes, which splits every CRLF, UTF-8 character, escape sequence and query somewhere; the
events must not depend on where the cuts fall.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.extractors import compile_extractors
from supervisor.pipeline import Output, OutputPipeline
from supervisor.profiles import builtin_profiles

TRANSCRIPTS = Path(__file__).resolve().parent / "fixtures" / "transcripts"
CHUNK_SIZES = [None, 1, 2, 3, 4, 5, 6, 7]
CODEX = builtin_profiles({})["codex"]["extractors"]


def run(data: bytes, size: int | None, extractors: list[dict[str, str]] | None = None,
        echo: str | None = None) -> tuple[bytes, list[Output]]:
    """Feed ``data`` in chunks of ``size`` (None: whole), then finish; all replies and events."""
    pipeline = OutputPipeline(1, compile_extractors(extractors or []), cols=100, rows=30)
    if echo is not None:
        pipeline.expect_echo(echo, 0.0)
    replies, out = [], []
    step = size or len(data) or 1
    for i in range(0, len(data), step):
        reply, events = pipeline.feed(data[i:i + step], 1.0)
        replies.append(reply)
        out.extend(events)
    out.extend(pipeline.finish(1.0))
    return b"".join(replies), out


def lines(out: list[Output]) -> list[Any]:
    return [data["line"] for kind, data in out if kind == "log" and not data.get("partial")]


@pytest.mark.parametrize("size", CHUNK_SIZES[1:])
@pytest.mark.parametrize("name", sorted(p.stem for p in TRANSCRIPTS.glob("*.raw")))
def test_chunk_size_changes_no_event(name: str, size: int) -> None:
    """A real tool's output gives the same replies and events whatever the chunk size."""
    data = (TRANSCRIPTS / f"{name}.raw").read_bytes()
    assert run(data, size, CODEX) == run(data, None, CODEX)


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda s: f"chunk-{s or 'whole'}")
def test_codex_transcript_gives_lines_and_extractions(size: int | None) -> None:
    """codex's recording gives its lines numbered from 1 and the codex profile's facts."""
    _, out = run((TRANSCRIPTS / "codex-exec.raw").read_bytes(), size, CODEX)
    logs = [data for kind, data in out if kind == "log"]
    assert [d["line_num"] for d in logs] == list(range(1, len(logs) + 1))
    assert all(d["run"] == 1 and d["stream"] == "stdout" for d in logs)
    found = [(data["name"], data["value"], data["line_num"]) for kind, data in out if kind == "extraction"]
    assert found[:3] == [("codex.version", "0.169.0", 1), ("codex.model", "gpt-6.1-sol", 4),
                         ("codex.session", "01a1fde8-a88c-7a73-a786-cad8e4d2cc29", 10)]
    assert [value for name, value, _ in found if name == "codex.reconnect"][:4] == ["2/5", "3/5", "4/5", "5/5"]


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda s: f"chunk-{s or 'whole'}")
def test_terminal_queries_are_answered_once(size: int | None) -> None:
    """Cursor-position and colour queries get xterm's answers, wherever the chunks are cut."""
    replies, out = run(b"ab\x1b[6n\x1b]11;?\x07done\r\n", size)
    assert replies == b"\x1b[1;3R\x1b]11;rgb:1e1e/1e1e/1e1e\x07"
    assert [d.get("plain", d["line"]) for kind, d in out if kind == "log"] == ["abdone"]


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda s: f"chunk-{s or 'whole'}")
def test_echo_of_typed_input_is_marked_and_not_extracted(size: int | None) -> None:
    """Typed input echoed at the end of a prompt line is marked, and extractors do not see it."""
    extractors = [{"name": "answer", "pattern": r"\[y/N\] (?P<value>\w+)"}]
    _, out = run(b"Continue? [y/N] yes\r\nok\r\n", size, extractors, echo="yes\r")
    first = out[0][1]
    assert first["line"] == "Continue? [y/N] yes" and first["echo"] == 3
    assert [kind for kind, _ in out] == ["log", "log"], "no extraction from the echo"


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda s: f"chunk-{s or 'whole'}")
def test_a_value_comes_from_the_next_non_empty_line(size: int | None) -> None:
    """A match without a value takes the next non-empty line; one the run never gets is ''."""
    _, out = run(b"tokens used\r\n\r\n73,347\r\ntokens used\r\n", size, CODEX)
    found = [(d["value"], d["line_num"], d.get("value_line")) for kind, d in out
             if kind == "extraction" and d["name"] == "codex.tokens"]
    assert found == [("73,347", 1, 3), ("", 4, None)]


def test_a_partial_line_is_shown_then_replaced_or_retracted() -> None:
    """partial() shows the pending line once per change; erased before the end, it is taken back."""
    pipeline = OutputPipeline(2, compile_extractors([]))
    assert pipeline.feed(b"working |", 0.0) == (b"", [])
    assert pipeline.partial(0.0) == [("log", {"line": "working |", "line_num": 1, "stream": "stdout",
                                              "run": 2, "partial": True})]
    assert pipeline.partial(0.0) == [], "unchanged: not shown again"
    pipeline.feed(b"\r\x1b[K", 0.0)
    assert pipeline.finish(0.0) == [("log", {"line": "", "line_num": 1, "stream": "stdout", "run": 2,
                                             "partial": True})]
    assert pipeline.lines == 0 and pipeline.lines_emitted == 0


def test_counts_of_lines_and_extractions() -> None:
    """lines and extractions count final lines and every extraction event."""
    pipeline = OutputPipeline(1, compile_extractors([{"name": "n", "pattern": r"(?P<value>\d+)"}]))
    pipeline.feed(b"1\n2\nthree\n", 0.0)
    assert (pipeline.lines, pipeline.extractions, pipeline.lines_emitted) == (3, 2, 3)


def test_resize_changes_the_size_reported() -> None:
    """After resize, a text-area size query is answered with the new size."""
    pipeline = OutputPipeline(1, compile_extractors([]), cols=80, rows=24)
    pipeline.resize(132, 43)
    assert pipeline.feed(b"\x1b[18t", 0.0)[0] == b"\x1b[8;43;132t"


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda s: f"chunk-{s or 'whole'}")
def test_a_cursor_up_redraw_replaces_lines_and_extracts_their_new_text(size: int | None) -> None:
    """A progress tree redrawn with ``ESC[1A`` gives ``log`` events with the line numbers it
    replaces and ``redraw: true``; they are not counted as lines, and extractors read the new
    text (only when it changed)."""
    extractors = [{"name": "percent", "pattern": r"(?P<value>\d+)%"}]
    frame = b"\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2K\x1b[G"
    data = b"deps\n  fetch 10%\n" + frame + b"deps\n  fetch 60%\n" + frame + b"deps\n  fetch 60%\n"
    _, out = run(data, size, extractors)
    logs = [(d["line_num"], d["line"], d.get("redraw", False)) for kind, d in out if kind == "log"]
    assert logs == [(1, "deps", False), (2, "  fetch 10%", False), (2, "  fetch 60%", True)]
    found = [(d["value"], d["line_num"]) for kind, d in out if kind == "extraction"]
    assert found == [("10", 2), ("60", 2)]


def test_partial_hands_out_a_redraw_the_cursor_stays_on() -> None:
    """A status line redrawn in place with no newline after it shows up through partial()."""
    pipeline = OutputPipeline(1, compile_extractors([]))
    pipeline.feed(b"compiling\n\x1b[1A\rcompiled 3 files", 0.0)
    assert pipeline.partial(0.0) == [("log", {"line": "compiled 3 files", "line_num": 1, "stream": "stdout",
                                              "run": 1, "redraw": True})]
    assert pipeline.lines == 1


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda s: f"chunk-{s or 'whole'}")
def test_wide_characters_and_mode_escapes_in_events(size: int | None) -> None:
    """The events carry the terminal's cells (``日本語abc\\rXY`` is ``XY本語abc``) and no mode escapes."""
    _, out = run("\x1b[?25l日本語abc\rXY\r\n\x1b[?25hdone\r\n".encode(), size)
    assert lines(out) == ["XY本語abc", "done"]
