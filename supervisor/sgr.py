"""The state of a terminal's SGR attributes (``ESC[...m``), as the parameters that recreate it.

Shared by the line pipeline (:mod:`supervisor.lines`: a redrawn line is rendered again with one
SGR sequence per change of style) and the virtual screen (:mod:`supervisor.screen`: each cell
keeps its style code). Pure, no I/O.
"""
from __future__ import annotations

#: Which SGR attributes an "off" parameter turns off.
SGR_OFF = {22: (1, 2), 23: (3,), 24: (4, 21), 25: (5, 6), 27: (7,), 28: (8,), 29: (9,), 55: (53,)}


class SGRState:
    """The SGR state of the cursor, as the parameter string that recreates it (``"1;31"``)."""

    __slots__ = ("_attrs", "_bg", "_fg", "_ul", "code")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._attrs: dict[int, str] = {}
        self._fg = self._bg = self._ul = ""
        self.code = ""

    def apply(self, params: str) -> None:
        """Apply the parameters of one ``ESC[...m``; unknown ones are skipped."""
        tokens = params.split(";")
        i = 0
        while i < len(tokens):
            token = tokens[i]
            i += 1
            if ":" in token:  # ITU sub-parameters: 38:2::r:g:b, 4:3 (curly underline)
                head = token.partition(":")[0]
                if head == "38":
                    self._fg = token
                elif head == "48":
                    self._bg = token
                elif head == "58":
                    self._ul = token
                elif head == "4":
                    if token == "4:0":
                        self._attrs.pop(4, None)
                    else:
                        self._attrs[4] = token
                continue
            if token and not token.isdigit():
                continue
            n = int(token) if token else 0
            if n in (38, 48, 58):
                kind = tokens[i] if i < len(tokens) else ""
                width = 2 if kind == "5" else 4 if kind == "2" else 0
                if not width or i + width > len(tokens):
                    break  # malformed: the rest cannot be parsed reliably
                value = ";".join([token, *tokens[i:i + width]])
                i += width
                if n == 38:
                    self._fg = value
                elif n == 48:
                    self._bg = value
                else:
                    self._ul = value
            elif n == 0:
                self._attrs.clear()
                self._fg = self._bg = self._ul = ""
            elif 1 <= n <= 9 or n in (21, 53):
                self._attrs[n] = token
            elif n in SGR_OFF:
                for attr in SGR_OFF[n]:
                    self._attrs.pop(attr, None)
            elif 30 <= n <= 37 or 90 <= n <= 97:
                self._fg = token
            elif n == 39:
                self._fg = ""
            elif 40 <= n <= 47 or 100 <= n <= 107:
                self._bg = token
            elif n == 49:
                self._bg = ""
            elif n == 59:
                self._ul = ""
        parts = [self._attrs[k] for k in sorted(self._attrs)]
        parts.extend(p for p in (self._fg, self._bg, self._ul) if p)
        self.code = ";".join(parts)

    @property
    def bg(self) -> str:
        """The background alone, as the parameters that set it (``"44"``, ``"48;5;24"``): what
        erased cells get."""
        return self._bg
