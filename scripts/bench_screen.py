#!/usr/bin/env python3
"""Terminal emulators compared: correctness against tmux, and cost per byte.

For each candidate that imports here (``supervisor.screen`` always; pyte, pyavt, pyghostty and
vt100wasm where installed, e.g. in a throwaway venv, see docs/SCREEN.md), and for each case:

- correctness: the bytes are recorded once from a real PTY (the programs of
  ``tests/support/screen.py``: a curses program, ``less`` scrolled, wide and combining
  characters, the alternate screen, scroll regions, edits, colours, wrapping) or read from the
  transcripts of real tools, then fed to tmux and to the candidate at the same size. A case
  scores the rows whose text equals ``tmux capture-pane -p`` (trailing spaces ignored), and
  whether the cursor is where tmux has it.
- cost: microseconds per KB fed in 4 KB chunks (the size of a PTY read), then one snapshot, on
  the transcripts, on the recorded codex welcome screen and on a synthetic 1 MB TUI stream; the
  fastest of ``--repeat`` runs, run alternately, candidates side by side (compare the ratios:
  absolute numbers on a shared VM move with the neighbours' load, printed with each line).

    .venv/bin/python scripts/bench_screen.py                 # every installed candidate
    /tmp/emu/venv/bin/python scripts/bench_screen.py --json docs/bench-screen.json
    scripts/bench_screen.py --only ours,pyte --repeat 7 --show-diffs

Needs tmux for the correctness part (``--no-oracle`` skips it). Local only, bounded in time.
"""
from __future__ import annotations

import argparse
import codecs
import json
import os
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.screen import FIXTURES, ReplayPane, diff_rows, programs, record, transcripts  # noqa: E402

CHUNK = 4096


class Emulator(Protocol):
    def feed(self, data: bytes) -> None: ...
    def rows(self) -> list[str]: ...
    def cursor(self) -> tuple[int, int]: ...


# --- adapters: each candidate behind the same three calls ------------------------------------

class Ours:
    def __init__(self, cols: int, rows: int) -> None:
        from supervisor.screen import VirtualScreen

        self.screen = VirtualScreen(cols, rows)
        self.feed = self.screen.feed

    def rows(self) -> list[str]:
        rows: list[str] = self.screen.snapshot()["text"]
        return rows

    def cursor(self) -> tuple[int, int]:
        c = self.screen.snapshot()["cursor"]
        return c["x"], c["y"]


class Pyte:
    def __init__(self, cols: int, rows: int) -> None:
        import pyte

        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.feed = self.stream.feed

    def rows(self) -> list[str]:
        # ``display`` itself raises IndexError on a stub cell left alone by an edit (pyte bug)
        out = []
        for y in range(self.screen.lines):
            line = self.screen.buffer[y]
            out.append("".join(line[x].data for x in range(self.screen.columns)))
        return out

    def cursor(self) -> tuple[int, int]:
        return min(self.screen.cursor.x, self.screen.columns - 1), self.screen.cursor.y


class Avt:
    def __init__(self, cols: int, rows: int) -> None:
        import avt

        self.vt = avt.Vt(cols, rows, 0)
        self.decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode

    def feed(self, data: bytes) -> None:
        self.vt.feed_str(self.decode(data))

    def rows(self) -> list[str]:
        return [line.text for line in self.vt.view()]

    def cursor(self) -> tuple[int, int]:
        c = self.vt.cursor
        return c.col, c.row


class Ghostty:
    def __init__(self, cols: int, rows: int) -> None:
        from pyghostty import Terminal

        self.term = Terminal(cols, rows, scrollback=0)
        self.feed = self.term.feed
        self.height = rows

    def rows(self) -> list[str]:
        rows: list[str] = self.term.text().split("\n")
        return rows + [""] * (self.height - len(rows))

    def cursor(self) -> tuple[int, int]:
        x, y = self.term.cursor
        return x, y


class Vt100Wasm:
    """The Rust ``vt100`` crate through WebAssembly. Rows come from ``cells()``: a 16-byte
    header (rows, cols, cursor row, cursor col as little-endian u16), then 16 bytes a cell: the
    code point (u32), ..., flags at byte 12 (0x20 wide, 0x40 the second half of a wide one).
    Read from its output: the package documents none of it, and a combining mark is not in it."""

    def __init__(self, cols: int, rows: int) -> None:
        import vt100wasm

        self.screen = vt100wasm.Screen(rows, cols)
        self.feed = self.screen.process
        self.cols, self.height = cols, rows

    def rows(self) -> list[str]:
        cells = self.screen.cells()
        out = []
        for r in range(self.height):
            row = []
            for c in range(self.cols):
                start = 16 + (r * self.cols + c) * 16
                if cells[start + 12] & 0x40:
                    continue
                row.append(chr(int.from_bytes(cells[start:start + 4], "little") or 32))
            out.append("".join(row))
        return out

    def cursor(self) -> tuple[int, int]:
        cells = self.screen.cells()
        return int.from_bytes(cells[6:8], "little"), int.from_bytes(cells[4:6], "little")


CANDIDATES: dict[str, Callable[[int, int], Emulator]] = {
    "ours": Ours, "pyte": Pyte, "pyavt": Avt, "pyghostty": Ghostty, "vt100wasm": Vt100Wasm,
}


def available(names: list[str]) -> dict[str, Callable[[int, int], Emulator]]:
    found = {}
    for name in names:
        try:
            CANDIDATES[name](10, 3).feed(b"x")
        except ImportError as e:
            print(f"# {name}: not installed ({e.name})", file=sys.stderr)
            continue
        found[name] = CANDIDATES[name]
    return found


def feed_chunks(emulator: Emulator, data: bytes) -> None:
    for i in range(0, len(data), CHUNK):
        emulator.feed(data[i:i + CHUNK])


# --- correctness --------------------------------------------------------------------------------

def oracle_cases(workdir: Path) -> list[tuple[str, int, int, bytes]]:
    cases = [(p.name, p.cols, p.rows, p.record()) for p in programs(workdir)]
    codex = (FIXTURES / "codex-welcome.raw").read_bytes()
    cases.append(("codex-welcome", 100, 30, codex))
    for name, data in transcripts().items():
        cases.append((name, 80, 24, data))
        cases.append((f"{name}@60x12", 60, 12, data))
    return cases


def correctness(found: dict[str, Callable[[int, int], Emulator]], workdir: Path,
                show_diffs: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for case, cols, rows, data in oracle_cases(workdir):
        with ReplayPane(data, cols, rows, workdir) as tmux:
            want = tmux.capture()
            info = tmux.info()
        want_cursor = (int(info["cursor_x"]), int(info["cursor_y"]))
        line = [f"{case:<22}"]
        for name, make in found.items():
            try:
                emulator = make(cols, rows)
                feed_chunks(emulator, data)
                got = [r.rstrip(" ") for r in emulator.rows()]
                diffs = diff_rows(got, want)
                nfc = diff_rows([unicodedata.normalize("NFC", r) for r in got],
                                [unicodedata.normalize("NFC", r) for r in want])
                cursor_ok = emulator.cursor() == want_cursor
                error = None
            except Exception as e:  # noqa: BLE001 - a crashing candidate is a result, not the end
                diffs, nfc, cursor_ok, error = ["crash"] * rows, ["crash"], False, repr(e)
            good = rows - len(diffs)
            results.setdefault(name, {})[case] = {
                "rows": rows, "rows_equal": good, "rows_equal_nfc": rows - len(nfc),
                "cursor": cursor_ok, "error": error, "diffs": diffs,
            }
            line.append(f"{name}={good}/{rows}{'' if cursor_ok else ' c!'}")
            if show_diffs and diffs:
                print(f"--- {case} {name}: {error or ''}\n" + "\n".join(diffs[:8]))
        print("  ".join(line), flush=True)
    return results


# --- cost ---------------------------------------------------------------------------------------

def cost_inputs() -> dict[str, tuple[int, int, bytes]]:
    joined = b"".join(transcripts().values())
    codex = (FIXTURES / "codex-welcome.raw").read_bytes()
    synthetic = record([sys.executable, str(FIXTURES / "sequences.py"), "synthetic"], 120, 40)
    return {
        "transcripts": (80, 24, joined * max(1, 200_000 // len(joined))),
        "codex-welcome": (100, 30, codex * max(1, 200_000 // len(codex))),
        "synthetic-1MB": (120, 40, synthetic),
    }


def cost(found: dict[str, Callable[[int, int], Emulator]], repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, (cols, rows, data) in cost_inputs().items():
        times: dict[str, list[float]] = {name: [] for name in found}
        for _ in range(repeat):
            for name, make in found.items():  # alternate, so that load on the host hits all alike
                emulator = make(cols, rows)
                start = time.perf_counter()
                feed_chunks(emulator, data)
                emulator.rows()
                times[name].append(time.perf_counter() - start)
        line = [f"{label:<14} {len(data) / 1024:7.0f} KB load {os.getloadavg()[0]:4.1f}"]
        for name in found:
            # The fastest run: on a shared VM the others are the same work plus the neighbours'.
            us_per_kb = min(times[name]) * 1e6 / (len(data) / 1024)
            results.setdefault(name, {})[label] = round(us_per_kb, 1)
            line.append(f"{name}={us_per_kb:8.1f} µs/KB")
        print("  ".join(line), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CANDIDATES), help="comma-separated candidates")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-oracle", action="store_true", help="cost only (no tmux needed)")
    parser.add_argument("--no-cost", action="store_true")
    parser.add_argument("--show-diffs", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    found = available(args.only.split(","))
    out: dict[str, Any] = {"candidates": list(found)}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_oracle:
            out["correctness"] = correctness(found, Path(tmp), args.show_diffs)
    if not args.no_cost:
        out["cost_us_per_kb"] = cost(found, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
