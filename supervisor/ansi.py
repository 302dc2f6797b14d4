"""The escape sequences a terminal program prints, as regular expressions, and how to remove them.

The one grammar (ECMA-48 as xterm reads it): :mod:`supervisor.lines`, :mod:`supervisor.echo`,
:mod:`supervisor.terminal` and the virtual screen (:mod:`supervisor.screen`) build their
patterns from the pieces here, so that they agree on
where a sequence ends. The pieces are plain ``str`` sources; :func:`as_bytes` gives the same
pattern for ``bytes`` (``terminal.py`` reads raw output).

Unterminated string sequences (OSC, DCS, ...) end at the next ``ESC`` or at the end of the text:
a line cannot hold the rest of them, and a terminal would swallow everything up to the terminator
anyway.
"""
from __future__ import annotations

import re

__all__ = [
    "ALT_SCREEN_MODES",
    "ANSI_RE",
    "ANY_CONTROL",
    "CONTROL",
    "CONTROL_BUT_ESC",
    "CSI",
    "CSI_FINAL",
    "CSI_INTERMEDIATES",
    "CSI_PARAMS",
    "ESCAPE_RE",
    "ESC_FINAL",
    "ESC_FINAL_PLAIN",
    "ESC_OTHER",
    "OSC",
    "OSC_START",
    "STRING",
    "STRING_BODY",
    "STRING_END",
    "STRING_START",
    "STRING_STOP",
    "TEXT_RUN",
    "UNFINISHED",
    "as_bytes",
    "strip_ansi",
]

#: Control Sequence Introducer ``ESC [``, then parameter bytes, intermediate bytes and one final
#: byte. SGR colours (``ESC[1;31m``), cursor moves, erasures and queries are all CSI.
CSI_PARAMS = r"[0-?]*"
CSI_INTERMEDIATES = r"[ -/]*"
CSI_FINAL = r"[@-~]"
CSI = rf"\x1b\[{CSI_PARAMS}{CSI_INTERMEDIATES}{CSI_FINAL}"

#: String sequences: OSC (titles, hyperlinks, colour queries) and DCS, SOS, PM and APC
#: (``ESC P`` / ``X`` / ``^`` / ``_``), their body, and what ends them: BEL or ST (``ESC \``).
OSC_START = r"\x1b\]"
STRING_START = r"\x1b[PX^_]"
STRING_BODY = r"[^\x07\x1b]*"
STRING_END = r"(?:\x07|\x1b\\)"
OSC = rf"{OSC_START}{STRING_BODY}{STRING_END}?"
STRING = rf"{STRING_START}{STRING_BODY}{STRING_END}?"

#: Every other escape: ``ESC`` with optional intermediates and one final byte (``ESC 7``,
#: ``ESC ( B``, ``ESC M``, ST itself). Must come after CSI, OSC and STRING in an alternation
#: because ``[``, ``]`` and ``P`` are valid final bytes here too.
ESC_FINAL = r"[0-~]"
ESC_OTHER = rf"\x1b{CSI_INTERMEDIATES}{ESC_FINAL}"

#: Every C0 and C1 control character (the ones a renderer acts on are among them); every one
#: but ESC; and a run of anything else (text to draw).
ANY_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
CONTROL_BUT_ESC = r"[\x00-\x1a\x1c-\x1f\x7f-\x9f]"
TEXT_RUN = r"[^\x00-\x1f\x7f-\x9f]+"

#: The final byte of an escape that is neither CSI nor a string sequence (``[``, ``]``, ``P``,
#: ``X``, ``^`` and ``_`` start those), and what ends a string's body (BEL, or the ESC of ST).
ESC_FINAL_PLAIN = r"[0-OQ-WYZ\\`-~]"
STRING_STOP = r"[\x07\x1b]"

#: Control characters that print nothing: C0 except TAB, DEL, and C1. ``\n`` and ``\r`` are here
#: because a line handed to :func:`strip_ansi` should not contain them; if one does, it is stray.
CONTROL = r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"

#: The start of a sequence that the next chunk of output may complete, from its ``ESC`` to the
#: end of the text. A string sequence's body here holds no line break: for a reader of lines an
#: unterminated title does not swallow the lines after it.
UNFINISHED = rf"\x1b(?:\[{CSI_PARAMS}{CSI_INTERMEDIATES}|[\]PX^_][^\x07\x1b\r\n]*\x1b?|{CSI_INTERMEDIATES})\Z"

#: DEC private modes that switch to or from the alternate screen (``ESC[?1049h`` and its elders).
ALT_SCREEN_MODES = ("1049", "1047", "47")

#: One complete escape sequence (no lone controls): where a sequence starting at ``ESC`` ends.
ESCAPE_RE = re.compile(f"{CSI}|{OSC}|{STRING}|{ESC_OTHER}")

#: Everything that is not text on screen: escape sequences, then any stray control (a lone ESC
#: included).
ANSI_RE = re.compile(f"{CSI}|{OSC}|{STRING}|{ESC_OTHER}|{CONTROL}")


def as_bytes(pattern: str) -> bytes:
    """A pattern of this module (ASCII by construction) for matching ``bytes``."""
    return pattern.encode("ascii")


_sub = ANSI_RE.sub


def strip_ansi(text: str) -> str:
    """``text`` without escape sequences or control characters other than TAB.

    Returns ``text`` itself (the same object) when there is nothing to remove, so callers can
    use ``is`` to tell whether a line was plain.
    """
    return _sub("", text)
