#!/usr/bin/env python3
"""A benchmark agent that draws like a busy full-screen program: ``--rate`` bytes per second.

It enters the alternate screen and then, in frames every ``--frame-ms`` milliseconds, writes
what a TUI dashboard writes: now and then a full redraw (a title bar, a box of coloured text),
otherwise a few cells changed in place, a spinner and a status line, and new lines of a log
that scrolls in a scroll region; 256-colour and 24-bit colours, some CJK. The frames are made
ahead of time (deterministic, seeded), then written on an absolute schedule so that the rate
holds (a late frame is written at once, never skipped). Runs until killed.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

CSI = "\x1b["
WORDS = ["build", "test", "lint", "codex", "agent", "tokens", "日本語", "résumé", "ok", "fail", "42%"]
COLOURS = [f"{CSI}38;5;{n}m" for n in (33, 39, 82, 160, 214, 245)] + [f"{CSI}38;2;200;120;{n}m" for n in (0, 80)]
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def at(row: int, col: int) -> str:
    return f"{CSI}{row};{col}H"


def frames(cols: int, rows: int, size: int, count: int, seed: int = 15) -> list[bytes]:
    """``count`` frames of about ``size`` bytes each, for a ``cols`` x ``rows`` screen."""
    rng = random.Random(seed)
    body_rows = max(3, rows // 2)
    out: list[bytes] = []
    for number in range(count):
        parts: list[str] = []
        if number % 50 == 0:  # a full redraw
            parts.append(CSI + "H" + CSI + "2J" + CSI + "1;44m" + " agent dashboard ".center(cols)[:cols] + CSI + "0m")
            parts.append(at(2, 1) + "╭" + "─" * (cols - 2) + "╮")
            for r in range(3, body_rows):
                line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))
                parts.append(at(r, 1) + "│ " + rng.choice(COLOURS) + line[:cols - 10] + CSI + "0m" + at(r, cols) + "│")
            parts.append(at(body_rows, 1) + "╰" + "─" * (cols - 2) + "╯")
            parts.append(f"{CSI}{body_rows + 2};{rows}r")
        while sum(len(p) for p in parts) < size:
            kind = rng.random()
            if kind < 0.5:  # a few cells in place
                r, c = rng.randint(3, body_rows - 1), rng.randint(3, max(3, cols - 20))
                parts.append(at(r, c) + rng.choice(COLOURS) + rng.choice(WORDS) + CSI + "0m")
            elif kind < 0.6:  # the spinner and the status line
                parts.append(at(body_rows + 1, 2) + CSI + "1m" + SPINNER[number % len(SPINNER)] + CSI + "22m"
                             + f" working {number % 100:3d}%" + CSI + "K")
            else:  # a log line that scrolls the region
                parts.append(at(rows, 1) + "\n" + rng.choice(COLOURS) + f"[{number:06d}] "
                             + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) + CSI + "0m")
        out.append("".join(parts).encode())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1_000_000, help="bytes per second")
    parser.add_argument("--frame-ms", type=float, default=10.0, help="time between two frames")
    args = parser.parse_args()
    try:
        cols, rows = os.get_terminal_size(1)
    except OSError:
        cols, rows = 120, 40
    per_frame = max(1, int(args.rate * args.frame_ms / 1000))
    made = frames(cols, rows, per_frame, 400)
    out = sys.stdout.buffer
    out.write(b"\x1b[?1049h\x1b[?25l")
    start = time.monotonic()
    number = 0
    try:
        while True:
            wait = start + number * args.frame_ms / 1000 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            out.write(made[number % len(made)])
            out.flush()
            number += 1
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
