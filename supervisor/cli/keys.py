"""The terminal as ``run`` uses it: one key read in raw mode, and signals that detach.

After Ctrl-C, ``run`` asks "stop [s] or detach [d]?" and takes the answer as one key press, as
``git add -p`` and ``apt`` do, with the terminal in raw mode for that one read and put back as
it was in a ``finally``, whatever happens. SIGHUP (the terminal went away) and SIGTERM make the
command let go of the agent, which keeps running on the server, and say so.
"""
from __future__ import annotations

import contextlib
import os
import signal
import termios
import tty
from collections.abc import Iterator
from types import FrameType

from .conventions import Detached

#: What a key means at the question: stop the agent, or detach from it.
STOP_KEYS = frozenset("sSyY\r\n\x03\x04")  # Enter, Ctrl-C again and Ctrl-D mean stop too
DETACH_KEYS = frozenset("dDnN")


def answer(fd: int) -> str | None:
    """``stop`` or ``detach`` from one key press on the terminal ``fd`` (no Enter, no echo;
    other keys are ignored); None at end of input. The terminal's settings are put back before
    this returns or raises."""
    saved = termios.tcgetattr(fd)
    try:
        # TCSANOW, not the default TCSAFLUSH: a key pressed as the question appears, before
        # this call, must not be thrown away.
        tty.setraw(fd, termios.TCSANOW)
        while True:
            key = os.read(fd, 1).decode("latin-1")
            if not key:
                return None
            if key in STOP_KEYS:
                return "stop"
            if key in DETACH_KEYS:
                return "detach"
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def detach_on_signals(signals: tuple[int, ...] = (signal.SIGHUP, signal.SIGTERM)) -> Iterator[None]:
    """While inside, ``signals`` raise :class:`Detached` (in the main thread, where a blocking
    read is interrupted); the previous handlers are put back after."""
    def detach(signum: int, _frame: FrameType | None) -> None:
        raise Detached(signum)

    previous = {signum: signal.signal(signum, detach) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
