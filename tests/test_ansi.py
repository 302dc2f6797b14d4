"""strip_ansi and the shared escape-sequence grammar."""
from __future__ import annotations

import pytest

from supervisor.ansi import ESCAPE_RE, strip_ansi


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("\x1b[1mnpm\x1b[22m \x1b[33mwarn\x1b[39m", "npm warn"),
        ("\x1b[38;5;196mred\x1b[m \x1b[38:2::255:0:0mtrue\x1b[0m", "red true"),
        ("a\x1b[2K\x1b[1G\x1b[10;20Hb\x1b[?25l\x1b[?1049h", "ab"),
        ("\x1b[>4;1m\x1b[ q\x1b[0$p", ""),
    ],
)
def test_csi_removed(text: str, plain: str) -> None:
    """CSI sequences of every kind (SGR, moves, private modes, intermediates) are removed."""
    assert strip_ansi(text) == plain


@pytest.mark.parametrize(
    "osc",
    ["\x1b]0;my title\x07", "\x1b]0;my title\x1b\\", "\x1b]11;?\x07", "\x1b]8;;https://x.y/a?b=c\x1b\\"],
)
def test_osc_removed_with_either_terminator(osc: str) -> None:
    """OSC strings end at BEL or at ST and leave nothing behind."""
    assert strip_ansi(f"a{osc}b") == "ab"


def test_hyperlink_keeps_its_text() -> None:
    """An OSC 8 hyperlink loses its markup but keeps the visible link text."""
    assert strip_ansi("see \x1b]8;;https://e.x/\x1b\\the docs\x1b]8;;\x1b\\.") == "see the docs."


def test_dcs_and_apc_removed() -> None:
    """DCS and APC strings (tmux passthrough, kitty graphics) are removed whole."""
    assert strip_ansi("a\x1bPtmux;data\x1b\\b\x1b_Gi=1;AAAA\x1b\\c") == "abc"


@pytest.mark.parametrize("esc", ["\x1b7", "\x1b8", "\x1b(B", "\x1bM", "\x1b=", "\x1b>", "\x1bc"])
def test_other_escapes_removed(esc: str) -> None:
    """Two- and three-character escapes (save cursor, charset, keypad mode) are removed."""
    assert strip_ansi(f"x{esc}y") == "xy"


def test_stray_controls_removed_but_tab_kept() -> None:
    """BEL, NUL, BS, CR, DEL and C1 controls go; TAB stays because it is layout."""
    assert strip_ansi("a\x07b\x00c\x08d\re\x7ff\x9bg\th") == "abcdefg\th"


def test_unterminated_sequences_removed() -> None:
    """A lone ESC, or an OSC never terminated, is removed up to the end of the text."""
    assert strip_ansi("abc\x1b") == "abc"
    assert strip_ansi("abc\x1b]0;title that never ends") == "abc"
    assert strip_ansi("abc\x1b[") == "abc"


def test_plain_text_returned_as_the_same_object() -> None:
    """Text with nothing to strip comes back as the very same object, so ``is`` is a test."""
    text = "hello, wörld ✓"
    assert strip_ansi(text) is text


def test_escape_re_finds_where_a_sequence_ends() -> None:
    """ESCAPE_RE matches exactly one whole sequence starting at an ESC."""
    text = "\x1b[1;31mred"
    m = ESCAPE_RE.match(text)
    assert m is not None and m.group() == "\x1b[1;31m"
    m = ESCAPE_RE.match("\x1b]0;t\x07rest")
    assert m is not None and m.group() == "\x1b]0;t\x07"
