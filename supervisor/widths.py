"""How many terminal cells a character takes: 0, 1 or 2, by the ``wcwidth`` package's rules.

One place for the rule, so that the virtual screen (and, later, the line pipeline's redraws)
agree with each other and with terminals: East Asian wide and fullwidth characters and emoji
take two cells, combining marks, zero-width joiners and variation selectors none (they join the
character before them), everything else one. Widths are per code point, the way xterm, tmux
and most terminals lay out cells; sequences that newer terminals draw as one glyph (an emoji
with VS16, ZWJ families, flags as two regional indicators) are measured by their parts.

The answers are cached per character, and :func:`all_narrow` checks a whole run at C speed
with a translation table that learns each narrow character the first time it is measured.
"""
from __future__ import annotations

from wcwidth import wcwidth as _wcwidth

__all__ = ["NARROW_SEEN", "all_narrow", "char_width", "known_width"]

_cache: dict[str, int] = {}

#: The width of a character measured before, or ``None``: ``_cache.get``, for hot loops
#: (``itertools.groupby(text, known_width)`` splits a text into runs of one width in C).
known_width = _cache.get

#: Narrow characters seen so far, as a ``str.translate`` table that deletes them: a text that
#: ``translate`` empties is all narrow.
NARROW_SEEN: dict[int, None] = {}
_narrow = NARROW_SEEN


def char_width(ch: str) -> int:
    """Cells taken by the single character ``ch``: 0, 1 or 2. Controls, which print nothing,
    are 0."""
    width = _cache.get(ch)
    if width is None:
        width = max(_wcwidth(ch), 0)
        _cache[ch] = width
        if width == 1:
            _narrow[ord(ch)] = None
    return width


def all_narrow(text: str) -> bool:
    """Whether every character of ``text`` takes exactly one cell (fast for known ones)."""
    if text.isascii():
        return True
    rest = text.translate(_narrow)
    if not rest:
        return True
    return all(char_width(ch) == 1 for ch in rest)
