"""The escape sequences a terminal program prints, as regular expressions, and how to remove them.

One place for the grammar (ECMA-48 as xterm reads it) so that :mod:`supervisor.lines`, the
extractors and :mod:`supervisor.terminal` agree on where a sequence ends. The patterns are plain
``str`` sources; ``terminal.py`` compiles the ASCII ones again as ``bytes``.

Unterminated string sequences (OSC, DCS, ...) end at the next ``ESC`` or at the end of the text:
a line cannot hold the rest of them, and a terminal would swallow everything up to the terminator
anyway.
"""
from __future__ import annotations

import re

__all__ = [
    "ANSI_RE",
    "CONTROL",
    "CSI",
    "ESCAPE_RE",
    "ESC_OTHER",
    "OSC",
    "STRING",
    "strip_ansi",
]

#: Control Sequence Introducer: ``ESC [``, parameter bytes, intermediate bytes, one final byte.
#: SGR colours (``ESC[1;31m``), cursor moves, erasures and queries are all CSI.
CSI = r"\x1b\[[0-?]*[ -/]*[@-~]"

#: Operating System Command (titles, hyperlinks, colour queries), ended by BEL or ST (``ESC \``).
OSC = r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"

#: DCS, SOS, PM and APC strings (``ESC P`` / ``X`` / ``^`` / ``_``), ended like OSC.
STRING = r"\x1b[PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"

#: Every other escape: ``ESC`` with optional intermediates and one final byte (``ESC 7``,
#: ``ESC ( B``, ``ESC M``, ST itself). Must come after CSI, OSC and STRING in an alternation
#: because ``[``, ``]`` and ``P`` are valid final bytes here too.
ESC_OTHER = r"\x1b[ -/]*[0-~]"

#: Control characters that print nothing: C0 except TAB, DEL, and C1. ``\n`` and ``\r`` are here
#: because a line handed to :func:`strip_ansi` should not contain them; if one does, it is stray.
CONTROL = r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"

#: One complete escape sequence (no lone controls): where a sequence starting at ``ESC`` ends.
ESCAPE_RE = re.compile(f"{CSI}|{OSC}|{STRING}|{ESC_OTHER}")

#: Everything that is not text on screen: escape sequences, then any stray control (a lone ESC
#: included).
ANSI_RE = re.compile(f"{CSI}|{OSC}|{STRING}|{ESC_OTHER}|{CONTROL}")

_sub = ANSI_RE.sub


def strip_ansi(text: str) -> str:
    """``text`` without escape sequences or control characters other than TAB.

    Returns ``text`` itself (the same object) when there is nothing to remove, so callers can
    use ``is`` to tell whether a line was plain.
    """
    return _sub("", text)
