#!/usr/bin/env python3
"""A stand-in coding agent: prints what real agents print, so the supervisor has something alive
to show on a machine without codex.

Colours (on a terminal), a spinner redrawn with ``\\r``, a progress bar, commands and their
results, a warning, an ``ERROR`` line, a URL, token counts, and a prompt that waits for an answer
(``agent-supervisor send demo y``) with a timeout before going on. Stdlib only; the output is
the same on every run (no randomness), so tests can count on it.

    python3 -m supervisor.demo_agent                 # about 10 s, waits 15 s at the prompt
    python3 -m supervisor.demo_agent --fast          # no pauses, prompt timeout 0
    python3 -m supervisor.demo_agent --rounds 0      # keeps working until stopped
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from typing import NoReturn

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

TASKS = [
    ("read the project layout", "ls -la src", ["src/app.py", "src/util.py", "tests/test_app.py"]),
    ("run the test suite", "python -m pytest -q", ["4 passed, 1 failed in 0.42s"]),
    ("fix the failing test", "apply_patch src/util.py", ["M src/util.py"]),
    ("run the test suite again", "python -m pytest -q", ["5 passed in 0.40s"]),
]


class Out:
    """Colour only when a terminal (the supervisor's PTY) is reading, like real tools."""

    def __init__(self, colour: bool, speed: float, tty: bool) -> None:
        self.colour = colour
        self.speed = speed
        self.tty = tty  # spinners and redrawn progress only where a screen shows them

    def paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def line(self, text: str = "") -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def pause(self, seconds: float) -> None:
        if self.speed > 0:
            time.sleep(seconds / self.speed)

    def spin(self, label: str, frames: int = 12) -> None:
        """A spinner that redraws its line with a bare carriage return, then clears it."""
        if not self.tty:
            self.pause(0.08 * frames)
            return
        for index in range(frames):
            sys.stdout.write(f"\r{self.paint('36', SPINNER[index % len(SPINNER)])} {label}...")
            sys.stdout.flush()
            self.pause(0.08)
        sys.stdout.write("\r\x1b[K")
        sys.stdout.flush()

    def progress(self, label: str, steps: int = 10) -> None:
        for step in range(0 if self.tty else steps, steps + 1):
            bar = "#" * step + " " * (steps - step)
            sys.stdout.write(f"\r{label} [{bar}] {step * 100 // steps:3d}%")
            sys.stdout.flush()
            self.pause(0.05)
        sys.stdout.write("\n")
        sys.stdout.flush()


def ask(out: Out, question: str, timeout: float) -> str:
    """Print ``question`` without a newline and wait up to ``timeout`` s for a line of input."""
    sys.stdout.write(out.paint("1", question))
    sys.stdout.flush()
    if timeout > 0:
        try:
            ready, _, _ = select.select([sys.stdin], [], [], timeout)
        except (OSError, ValueError):
            ready = []
        if ready:
            answer = sys.stdin.readline()
            if answer:
                return answer.strip()
    out.line()
    out.line(out.paint("2", f"(no answer after {timeout:g}s: assuming no)"))
    return ""


def header(out: Out, args: argparse.Namespace) -> None:
    out.line(out.paint("1", "Demo Agent v1.4.2") + out.paint("2", " (a stand-in for codex)"))
    out.line("--------")
    out.line(f"{out.paint('1', 'workdir:')} {os.getcwd()}")
    out.line(f"{out.paint('1', 'model:')} demo-large")
    out.line(f"{out.paint('1', 'session id:')} 0199a213-81c0-7800-8aa1-bbab2a035a53")
    out.line("--------")
    out.line(out.paint("36", "user"))
    out.line(args.task)


def work(out: Out, round_no: int, tokens: int) -> int:
    """One round of plan, commands and results; returns the running token count."""
    out.spin("thinking")
    out.line(out.paint("35", "thinking") + f" round {round_no}: plan the change in 4 steps")
    for number, (title, command, results) in enumerate(TASKS, 1):
        out.spin(title, frames=6)
        out.line(f"{out.paint('1;32', '✓')} step {number}/{len(TASKS)}: {title}")
        out.line(f"{out.paint('35', 'exec')} {out.paint('1', command)} in {os.getcwd()}")
        out.pause(0.2)
        for result in results:
            colour = "31" if "failed" in result else "2"
            out.line(out.paint(colour, result))
        tokens += 1187 * number + 311 * round_no
        out.line(f"{out.paint('2', 'tokens used:')} {tokens:,}")
        if number == 1:
            out.line(f"{out.paint('1;33', 'warning:')} no AGENTS.md found; using defaults")
        if number == 2:
            out.line(f"{out.paint('1;31', 'ERROR:')} test_util.py::test_split failed: "
                     "expected 3 parts, got 2")
            out.line("see https://docs.example.com/errors/E042 for details")
        out.pause(0.3)
    out.progress("indexing")
    return tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="fix the failing test in src/util.py",
                        help="the instruction echoed as the user's")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of work (0: until stopped)")
    parser.add_argument("--prompt-timeout", type=float, default=15.0,
                        help="seconds to wait for an answer at the prompt (0: do not wait)")
    parser.add_argument("--no-prompt", action="store_true", help="do not ask anything")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="pace multiplier (2: twice as fast; 0: no pauses)")
    parser.add_argument("--fast", action="store_true",
                        help="no pauses and no wait at the prompt (for tests)")
    parser.add_argument("--exit-code", type=int, default=0, help="status to exit with")
    args = parser.parse_args(argv)
    if args.fast:
        args.speed, args.prompt_timeout = 0.0, 0.0
    tty = sys.stdout.isatty()
    out = Out(tty or bool(os.environ.get("FORCE_COLOR")), args.speed, tty)

    def stopped(signum: int, _frame: object) -> NoReturn:
        out.line()
        out.line(out.paint("33", f"interrupted by {signal.Signals(signum).name}; saving state"))
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    header(out, args)
    tokens = 0
    round_no = 1
    while args.rounds == 0 or round_no <= args.rounds:
        tokens = work(out, round_no, tokens)
        round_no += 1
    if not args.no_prompt:
        answer = ask(out, "Apply the patch to src/util.py? [y/N] ", args.prompt_timeout)
        if answer.lower().startswith("y"):
            out.line(out.paint("32", "applied: 1 file changed, 3 insertions(+), 1 deletion(-)"))
        else:
            out.line(out.paint("33", "skipped: the patch was not applied"))
    out.spin("summarising", frames=8)
    out.line(out.paint("1", "done") + f": {len(TASKS)} steps in {round_no - 1} round(s)")
    out.line(f"tokens used: {tokens:,}")
    return int(args.exit_code)


if __name__ == "__main__":
    sys.exit(main())
