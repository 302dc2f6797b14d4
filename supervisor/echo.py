"""Which part of a line is the terminal echoing input back, not the agent's own output.

With its ECHO flag on, a terminal prints what is typed: ``y`` answered to ``Continue? [y/N] ``
comes back as the line ``Continue? [y/N] y``. The agent did not say ``y``; extractors must not
see it, and consumers may want to show it differently.
"""
from __future__ import annotations

import re
from collections import deque

from .ansi import ESCAPE_RE
from .lines import Line

__all__ = ["EchoTracker"]

_INPUT_LINES = re.compile(r"\r\n|\r|\n")

#: Most expectations kept: input written faster than it echoes is not remembered forever.
_MAX_EXPECTED = 256


def _as_echoed(text: str) -> str:
    """One line of input as the terminal's line discipline would echo it."""
    text = ESCAPE_RE.sub("", text)  # arrow keys and the like are not echoed as text
    if text.isprintable():
        return text
    kept: list[str] = []
    for c in text:
        if c in ("\x7f", "\b"):  # erase: the echo backs over the character
            if kept:
                kept.pop()
        elif c == "\x15":  # kill: the whole line so far
            kept.clear()
        elif c == "\t" or c.isprintable():
            kept.append(c)
    return "".join(kept)


class EchoTracker:
    """Remembers input written to the terminal while its ECHO flag is on, so the echoed text is not taken for agent output.

    Echo comes back in the order it was written, so only the oldest expectation is compared
    with each line; one that never shows up (the program turned echo off) expires after
    ``ttl`` seconds. Call :meth:`match` on final lines only: a match consumes the expectation.
    Not safe to share between threads.
    """

    __slots__ = ("_expected", "_ttl")

    def __init__(self, ttl: float = 5.0) -> None:
        self._ttl = ttl
        self._expected: deque[tuple[float, str]] = deque(maxlen=_MAX_EXPECTED)

    def expect(self, text: str, now: float) -> None:
        """Note ``text`` as written at ``now``: each line of it (CR, LF or CRLF ended, or the
        unterminated rest) is one expectation; empty ones are skipped."""
        deadline = now + self._ttl
        for part in _INPUT_LINES.split(text):
            echoed = _as_echoed(part)
            if echoed:
                self._expected.append((deadline, echoed))

    def match(self, line: Line, now: float) -> int:
        """How many characters at the end of ``line.plain`` are the oldest live expectation."""
        expected = self._expected
        while expected and expected[0][0] < now:
            expected.popleft()
        if expected and line.plain.endswith(expected[0][1]):
            return len(expected.popleft()[1])
        return 0
