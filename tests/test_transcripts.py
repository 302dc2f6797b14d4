"""Real terminal output, recorded under a PTY byte for byte, comes out as the lines a person saw.

The recordings are copies of ``/work/shared/transcripts/*.raw`` kept in ``fixtures/transcripts``
so the tests run anywhere. Each is fed whole and in every chunk size from 1 to 7 bytes, which
splits every CRLF, UTF-8 character and escape sequence in them somewhere.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.lines import Line, LineSplitter

TRANSCRIPTS = Path(__file__).resolve().parent / "fixtures" / "transcripts"

NPM_WARN = (
    'npm warn Unknown user config "nodedir". This will stop working in the next major version of'
    " npm. See `npm help npmrc` for supported config options."
)
CONNECT_ERROR = (
    " ERROR codex_api::endpoint::responses_websocket: failed to connect to Responses WebSocket"
    " stage=Unknown"
)

EXPECTED: dict[str, list[str]] = {
    "npm-build": [
        NPM_WARN,
        "",
        "> demo@1.0.0 build",
        ("> node -e \"for(let i=0;i<=10;i++){process.stdout.write('\\rbuilding '+(i*10)+'%');}"
        " console.log(); console.error('warning: something')\""),
        "",
        "building 100%",
        "warning: something",
        # The spinner after it (⠙ ESC[1G ESC[0K) was erased: nothing is left of it.
    ],
    "npm-err": [
        NPM_WARN,
        'npm error Missing script: "nosuch"',
        "npm error",
        "npm error To see a list of scripts, run:",
        "npm error   npm run",
        ("npm error A complete log of this run can be found in:"
        " /home/dev/.npm/_logs/2026-11-21T11_40_35_508Z-debug-0.log"),
        "",  # the recording ends with CRLF LF: one blank line on screen
    ],
    "npm-install": [
        NPM_WARN,
        "added 2 packages in 368ms",
    ],
    "npm-test": [
        NPM_WARN,
        "",
        "> demo@1.0.0 test",
        "> node test.js",
        "",
        "✓ test 0",
        "✓ test 1",
        "✓ test 2",
        "✗ test 3 failed",
        "✓ test 4",
        "4 passing, 1 failing",
    ],
    "codex-exec": [
        "OpenAI Codex v0.169.0",
        "--------",
        "workdir: /home/dev/project",
        "model: gpt-6.1-sol",
        "provider: openai",
        "approval: never",
        "sandbox: read-only",
        "reasoning effort: none",
        "reasoning summaries: none",
        "session id: 01a1fde8-a88c-7a73-a786-cad8e4d2cc29",
        "--------",
        "user",
        "say hello",
        ("warning: Codex could not find bubblewrap on PATH. Install bubblewrap with your OS package"
        " manager. See the sandbox prerequisites:"
        " https://developers.openai.com/codex/concepts/sandboxing#prerequisites. Codex will use"
        " the bundled bubblewrap in the meantime."),
        "2026-11-21T11:40:45.629852Z" + CONNECT_ERROR,
        "2026-11-21T11:40:45.656761Z" + CONNECT_ERROR,
        "2026-11-21T11:40:45.865847Z" + CONNECT_ERROR,
        "ERROR: Reconnecting... 2/5",
        "2026-11-21T11:40:46.290959Z" + CONNECT_ERROR,
        "ERROR: Reconnecting... 3/5",
        "2026-11-21T11:40:47.030279Z" + CONNECT_ERROR,
        "ERROR: Reconnecting... 4/5",
        "2026-11-21T11:40:48.712101Z" + CONNECT_ERROR,
        "ERROR: Reconnecting... 5/5",
        "2026-11-21T11:40:51.920482Z" + CONNECT_ERROR,
        ("warning: Falling back from WebSockets to HTTPS transport. stream disconnected before"
        " completion: failed to lookup address information: Name does not resolve"),
        "ERROR: Reconnecting... waiting for network",
        "ERROR: Reconnecting... waiting for network",
        "ERROR: Reconnecting... waiting for network",
        "ERROR: Reconnecting... waiting for network",
        "",  # the recording ends with CRLF LF: one blank line on screen
    ],
}

#: None feeds the whole recording at once.
CHUNK_SIZES = [None, 1, 2, 3, 4, 5, 6, 7]


def split(data: bytes, size: int | None) -> list[Line]:
    splitter = LineSplitter()
    lines: list[Line] = []
    step = size or len(data)
    for i in range(0, len(data), step):
        lines.extend(splitter.feed(data[i:i + step]))
    lines.extend(splitter.finish())
    return lines


def test_every_recording_has_expected_lines() -> None:
    """Each recording in the fixtures directory is checked, and none is missing."""
    assert sorted(p.stem for p in TRANSCRIPTS.glob("*.raw")) == sorted(EXPECTED)


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda s: f"chunk-{s or 'whole'}")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_transcript_gives_the_lines_on_screen(name: str, size: int | None) -> None:
    """The recording comes out as exactly the lines on screen, whatever the chunk size."""
    lines = split((TRANSCRIPTS / f"{name}.raw").read_bytes(), size)
    assert [line.plain for line in lines] == EXPECTED[name]
    assert [line.line_num for line in lines] == list(range(1, len(lines) + 1))
    assert not any(line.partial or line.continuation for line in lines)
    assert not any("\r" in line.text or "\n" in line.text for line in lines)
    assert not any("\x1b" in line.plain or "⠙" in line.text or "⠹" in line.text for line in lines)


@pytest.mark.parametrize("size", CHUNK_SIZES[1:])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_chunk_size_changes_nothing(name: str, size: int) -> None:
    """Text, plain, numbers and flags are identical for every chunk size and for the whole."""
    data = (TRANSCRIPTS / f"{name}.raw").read_bytes()
    assert split(data, size) == split(data, None)


def test_colours_kept_as_printed() -> None:
    """Lines without redraws keep their colour escapes byte for byte."""
    lines = split((TRANSCRIPTS / "codex-exec.raw").read_bytes(), 3)
    assert lines[2].text == "\x1b[1mworkdir:\x1b[0m /home/dev/project"
    assert lines[11].text == "\x1b[36muser\x1b[0m"
    lines = split((TRANSCRIPTS / "npm-test.raw").read_bytes(), 3)
    assert lines[8].text == "\x1b[31m✗ test 3 failed\x1b[0m"


def test_progress_redraws_collapse_to_one_line() -> None:
    """npm-build's CR-separated progress gives one plain line ``building 100%``."""
    lines = split((TRANSCRIPTS / "npm-build.raw").read_bytes(), 1)
    (building,) = [line for line in lines if "building" in line.plain and ">" not in line.plain]
    assert building.text == "building 100%"
    assert building.plain is building.text
