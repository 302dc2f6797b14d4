"""api.redact: the token is masked in log lines however a request line spells it."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from api.redact import Redactor

TOKEN = "q3JX-Yk_9aZ.tok~en"
redact = Redactor([TOKEN])


def encoded(text: str, upper: bool = True) -> str:
    """Every character of ``text`` percent-encoded."""
    out = "".join(f"%{b:02X}" for b in text.encode())
    return out if upper else out.lower()


@pytest.mark.parametrize("target", [
    f"/api/agents?token={TOKEN}",
    f"/api/agents?%74oken={TOKEN}",          # the key encoded: the server decodes it to "token"
    f"/api/agents?a=1&%54%4F%4B%45%4E={TOKEN}",
    f"/api/agents;token={TOKEN}",
    f"/api/agents?x=1;token={TOKEN}",
    f"/api/agents?TOKEN={TOKEN}",
    f"/api/agents?token%3D{TOKEN}",
    f"/api/agents?token%253D{TOKEN}",
    f"/api/agents?token={encoded(TOKEN)}",
    f"/api/agents?token={encoded(TOKEN, upper=False)}",
    f"/api/agents?tokne={TOKEN}",             # a typo'd key: the value is still the token
    f"/api/agents/{TOKEN}/stream",            # anywhere in the line
    f"/api/agents/{quote(TOKEN, safe='')}/x",
    f"/api/agents?q={encoded(TOKEN[:5])}{TOKEN[5:]}",  # partly encoded
    f"/api/agents?q={''.join('%25' + format(b, '02x') for b in TOKEN.encode())}",  # encoded twice
])
def test_the_token_is_masked_in_every_spelling(target: str) -> None:
    """Each way of writing the token into a request line leaves neither it nor the way it was
    written in the logged line."""
    line = f'127.0.0.1 - - [2026-12-01 22:17:15] "GET {target} HTTP/1.1" 200 320 0.003484'
    masked = redact(line)
    assert "***" in masked
    assert TOKEN not in masked
    for spelled in (encoded(TOKEN), encoded(TOKEN, upper=False), quote(TOKEN, safe="")):
        assert spelled not in masked
    assert masked.startswith('127.0.0.1 - - [2026-12-01 22:17:15] "GET /api/agents')
    assert masked.endswith('HTTP/1.1" 200 320 0.003484')


@pytest.mark.parametrize("target", ["/api/agents?token=not-the-token", "/api/agents?%74oken=x&y=2",
                                    "/api/agents?Token=x"])
def test_any_token_parameter_is_masked(target: str) -> None:
    """A token parameter's value is masked even when it is not the server's token."""
    masked = redact(f'"GET {target} HTTP/1.1" 401')
    assert "token=***" in masked and "not-the-token" not in masked and "=x" not in masked


def test_other_parameters_stay() -> None:
    """What is not a token stays as it was, for the log to be useful."""
    line = '"GET /api/agents/build/events?after=12&limit=100&tokens=3 HTTP/1.1" 200'
    assert redact(line) == line
    assert Redactor()(line) == line
