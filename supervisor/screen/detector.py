"""Did the program enter the alternate screen? A byte scan, for starting a screen only when needed.

Full-screen programs (codex, vim, less, htop) switch to the alternate screen first:
``ESC [ ? 1049 h`` (or the older ``1047`` and ``47``, possibly among other modes in one
sequence). Under ``screen = "auto"`` an agent runs no emulator until that happens, so a program
that never does costs one ``bytes`` search per chunk (C speed, no decoding), and nothing else.
A sequence cut between two chunks is found when its end arrives.
"""
from __future__ import annotations

import re

from supervisor.ansi import ALT_SCREEN_MODES, as_bytes

__all__ = ["AlternateScreenDetector", "alternate_switches", "unfinished_switch"]

_ENTER = re.compile(as_bytes(rf"\x1b\[\?(?:[0-9;]*;)?(?:{'|'.join(ALT_SCREEN_MODES)})(?:;[0-9;]*)?h"))
_SWITCH = re.compile(as_bytes(rf"\x1b\[\?(?:[0-9;]*;)?(?:{'|'.join(ALT_SCREEN_MODES)})(?:;[0-9;]*)?([hl])"))


def alternate_switches(data: bytes) -> list[tuple[int, bool]]:
    """Where ``data`` enters (True) or leaves (False) the alternate screen: the offset of each
    switching sequence, in order. A sequence cut by the end of ``data`` is not seen."""
    if b"\x1b[?" not in data:
        return []
    return [(m.start(), m.group(1) == b"h") for m in _SWITCH.finditer(data)]
#: The start of such a sequence, cut off by the end of a chunk.
_PREFIX = re.compile(rb"\x1b(?:\[(?:\?[0-9;]*)?)?\Z")
#: Longest start kept for the next chunk; a longer run of parameters is no mode switch we know.
_TAIL_MAX = 64


def unfinished_switch(data: bytes) -> int:
    """Where a sequence that may be a switch starts and is cut by the end of ``data``; -1 if
    none (the part to scan again with the next chunk)."""
    i = data.rfind(b"\x1b", max(0, len(data) - _TAIL_MAX))
    return i if i >= 0 and _PREFIX.match(data, i) else -1


class AlternateScreenDetector:
    """Feed it the output chunks; ``feed`` returns ``None`` until the program enters the
    alternate screen, then, once, the bytes from the start of that sequence to the end of the
    chunk (with the part of it that came in the chunk before): what to feed a new
    :class:`~supervisor.screen.VirtualScreen`. ``entered`` stays true afterwards. Not safe to
    share between threads."""

    __slots__ = ("_tail", "entered")

    def __init__(self) -> None:
        self._tail = b""
        self.entered = False

    def feed(self, data: bytes) -> bytes | None:
        if self.entered:
            return None
        buf = self._tail + data if self._tail else data
        self._tail = b""
        if b"\x1b[?" in buf:
            m = _ENTER.search(buf)
            if m is not None:
                self.entered = True
                return buf[m.start():]
        i = buf.rfind(b"\x1b", max(0, len(buf) - _TAIL_MAX))
        if i >= 0 and _PREFIX.match(buf, i):
            self._tail = buf[i:]
        return None
