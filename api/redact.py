"""Secrets out of log lines: the token, however a request line spells it.

A request line is logged as the client sent it, and a client may spell the token in many ways
that still authenticate or still give it away: ``?token=T``, ``?%74oken=T`` (the key
percent-encoded: the server decodes it to ``token``), ``;token=T``, ``?TOKEN=T``,
``?token%3DT``, the value percent-encoded (``%71%33...``, even twice), or the token anywhere
else (a path segment, a typo'd key). :class:`Redactor` masks both:

- **the value itself**: every occurrence of a known secret, each character as itself or
  percent-encoded once or twice, hex digits in either case, wherever it is in the line;
- **token parameters**: any query (or ``;``) parameter whose key decodes, in any case, to
  ``token``: its value is masked whatever it is (a wrong token is often a near miss of the
  right one, or another server's).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

MASK = "***"

#: A parameter of a query string or a ``;`` path parameter, as sent.
_PARAMETER = re.compile(r"(?<=[?&;])[^&;#\s\"]+")


def _hex(value: int) -> str:
    """``value`` (a byte) as two hex digits that match in either case: ``[aA]3``."""
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{value:02x}")


def secret_pattern(secret: str) -> str:
    """A regular expression for ``secret`` as it may appear in a URL: each character as is, or
    percent-encoded (``%71``), or encoded twice (``%2571``)."""
    parts = []
    for char in secret:
        encoded = "".join(f"%{_hex(b)}" for b in char.encode("utf-8"))
        twice = "".join(f"%25{_hex(b)}" for b in char.encode("utf-8"))
        parts.append(f"(?:{re.escape(char)}|{encoded}|{twice})")
    return "".join(parts)


def _is_token_parameter(raw: str) -> bool:
    decoded = raw
    for _ in range(3):  # a key encoded twice still reads "token" to a curious eye
        decoded = unquote_plus(decoded)
    key = decoded.partition("=")[0].strip().lower()
    return key == "token"


def _mask_parameter(match: re.Match[str]) -> str:
    return f"token={MASK}" if _is_token_parameter(match.group(0)) else match.group(0)


class Redactor:
    """Masks ``secrets`` (the server's token; empty ones are ignored) and every token
    parameter in a line of text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        patterns = [secret_pattern(s) for s in secrets if s]
        self._secrets = re.compile("|".join(patterns)) if patterns else None

    def __call__(self, line: str) -> str:
        line = _PARAMETER.sub(_mask_parameter, line)
        if self._secrets is not None:
            line = self._secrets.sub(MASK, line)
        return line
