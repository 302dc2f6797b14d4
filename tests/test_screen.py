"""Unit tests of the virtual screen (supervisor/screen/): bytes in, cells out, no PTY.

What tmux shows for whole programs is checked in test_screen_tmux.py; here each rule is pinned
down alone, including the ones where this follows xterm rather than tmux 3.3a, and the
bookkeeping (seq, changes, soft wraps) that no terminal shows.
"""
from __future__ import annotations

import random

import pytest

from supervisor.screen import AlternateScreenDetector, VirtualScreen

ESC = b"\x1b"
CSI = b"\x1b["


def screen_of(data: bytes, cols: int = 20, rows: int = 5) -> VirtualScreen:
    screen = VirtualScreen(cols, rows)
    screen.feed(data)
    return screen


def text(data: bytes, cols: int = 20, rows: int = 5) -> list[str]:
    rows_: list[str] = screen_of(data, cols, rows).snapshot()["text"]
    return rows_


def view(snapshot: dict[str, object]) -> dict[str, object]:
    """A snapshot without ``seq`` (which counts feeds, not what is shown)."""
    return {k: v for k, v in snapshot.items() if k != "seq"}


# --- chunk boundaries ------------------------------------------------------------------------

CHUNKED_INPUTS = {
    "utf8-and-sgr": "日本語 e\u0301 ✓ \x1b[1;38;5;196mred\x1b[0m 😀\r\nnext".encode(),
    "cursor-and-erase": b"\x1b[2J\x1b[3;5Hhere\x1b[1A\x1b[2Kup\x1b[10Gcol\x1b[5X\r\n\x1b[?25l",
    "alternate-screen": b"main\r\n\x1b[?1049h\x1b[H\x1b[2Jalt \x1b]0;a title\x07screen\x1b[?1049lback",
    "osc-and-strings": b"a\x1b]8;;https://x.example\x1b\\link\x1b]8;;\x1b\\b\x1bP+q544e\x1b\\c\x1b_apc\x1b\\d",
    "scroll-region": b"\x1b[2;4r\x1b[4;1H1\n2\n3\n4\x1bM\x1bM\x1bM\x1bMtop\x1b[r\x1b(0lqk\x1b(B",
}


@pytest.mark.parametrize("name", list(CHUNKED_INPUTS))
def test_split_anywhere_gives_the_same_screen(name: str) -> None:
    """Cut into two chunks at every byte, or fed byte by byte, the input shows the same screen
    as fed whole: UTF-8 characters, CSI, OSC, DCS and APC strings cut in two are handled whole."""
    data = CHUNKED_INPUTS[name]
    whole = view(screen_of(data).snapshot())
    for cut in range(1, len(data)):
        screen = VirtualScreen(20, 5)
        screen.feed(data[:cut])
        screen.feed(data[cut:])
        assert view(screen.snapshot()) == whole, f"cut at byte {cut}: {data[:cut]!r} | {data[cut:]!r}"
    screen = VirtualScreen(20, 5)
    for i in range(len(data)):
        screen.feed(data[i:i + 1])
    assert view(screen.snapshot()) == whole


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert text(b"a\xffb\xe6\x97c")[0] == "a\ufffdb\ufffdc"


def test_an_unterminated_string_is_skipped_without_holding_the_output() -> None:
    """An OSC that never ends swallows what follows (as a terminal would), chunk after chunk,
    without keeping it; the first BEL or ESC ends it."""
    screen = VirtualScreen(20, 3)
    screen.feed(b"shown\x1b]0;" + b"t" * 100_000)
    for _ in range(10):
        screen.feed(b"x" * 100_000)
    assert len(screen._carry) == 0
    screen.feed(b"\x07 after")
    assert screen.snapshot()["text"][0] == "shown after"


# --- text, wide and combining characters -----------------------------------------------------

def test_carriage_return_over_wide_characters_counts_cells() -> None:
    """The issue's line-mode case, on the screen: 日本語abc then CR XY shows XY本語abc."""
    assert text("日本語abc\rXY".encode())[0] == "XY本語abc"


def test_a_wide_character_takes_two_cells() -> None:
    screen = screen_of("日本x".encode())
    assert screen.cursor.x == 5
    assert screen.snapshot()["text"][0] == "日本x"


def test_combining_marks_join_the_cell_before() -> None:
    """e + U+0301 is one cell; CR then E overwrites the cell, accent and all."""
    screen = screen_of("e\u0301tude".encode())
    assert screen.cursor.x == 5
    assert screen.snapshot()["text"][0] == "e\u0301tude"
    assert text("e\u0301tude\rE".encode())[0] == "Etude"
    assert text("日\u0301x".encode())[0] == "日\u0301x"  # after a wide character: joins it


def test_zero_width_characters_take_no_cell() -> None:
    assert text("a\u200bb\ufe0fc".encode())[0] == "a\u200bb\ufe0fc"
    assert screen_of("a\u200bb".encode()).cursor.x == 2


def test_a_wide_character_that_does_not_fit_wraps() -> None:
    screen = screen_of(b"x" * 19 + "日".encode(), cols=20)
    assert screen.snapshot()["text"][:2] == ["x" * 19, "日"]
    assert screen.snapshot()["wrapped"][0] is True


def test_writing_over_half_of_a_wide_character_blanks_the_other_half() -> None:
    """As xterm does (tmux 3.3a keeps the wide character drawn over)."""
    assert text("日本語\x1b[2GZ".encode())[0] == " Z本語"          # over the right half
    assert text("日本語\x1b[3GZ".encode())[0] == "日Z 語"         # over the left half
    assert text("ab日本\x1b[4G\x1b[P".encode())[0] == "ab 本"      # delete inside a pair
    assert text("ab日本\x1b[4G\x1b[@".encode())[0] == "ab   本"    # insert inside a pair


def test_autowrap_and_the_pending_wrap() -> None:
    """At the margin the cursor waits on the last column: CR there stays on the row, the next
    character wraps; BS goes to the column before the last (xterm)."""
    screen = screen_of(b"0123456789", cols=10)
    assert (screen.cursor.x, screen.cursor.y) == (9, 0)
    screen.feed(b"\rA")
    assert screen.snapshot()["text"][:2] == ["A123456789", ""]
    screen.feed(b"\x1b[1;10Hz!")
    assert screen.snapshot()["text"][:2] == ["A12345678z", "!"]
    assert text(b"0123456789\x08X", cols=10)[0] == "01234567X9"
    assert text(b"\x1b[?7l0123456789abc", cols=10)[:2] == ["012345678c", ""]


def test_insert_mode_and_repeat() -> None:
    assert text(b"abcdef\x1b[3G\x1b[4hXY\x1b[4lZ")[0] == "abXYZdef"
    assert text(b"-\x1b[4b|")[0] == "-----|"


def test_line_drawing_character_set() -> None:
    assert text(b"\x1b(0lqqk\x1b(B x \x0e\x1b)0x\x0f")[0] == "┌──┐ x │"


def test_tabs_and_tab_stops() -> None:
    assert text(b"a\tb\tc", cols=30)[0] == "a       b       c"
    assert text(b"\x1b[3g\x1b[5G\x1bH\rx\ty\tz", cols=20)[0] == "x   y              z"
    assert text(b"x\x1b[2Iy\x1b[Zz", cols=30)[0] == "x               z"  # CHT twice, CBT once


# --- the cursor --------------------------------------------------------------------------------

def test_cursor_visibility() -> None:
    screen = screen_of(b"\x1b[?25l")
    assert screen.snapshot()["cursor"] == {"x": 0, "y": 0, "visible": False}
    screen.feed(b"\x1b[?25h")
    assert screen.cursor.visible


def test_cursor_moves_are_clamped_to_the_screen() -> None:
    screen = screen_of(b"\x1b[99;99H")
    assert (screen.cursor.x, screen.cursor.y) == (19, 4)
    screen.feed(b"\x1b[99A\x1b[99D")
    assert (screen.cursor.x, screen.cursor.y) == (0, 0)


def test_save_and_restore_the_cursor_with_its_colour() -> None:
    screen = screen_of(b"\x1b[2;3H\x1b[31m\x1b7\x1b[0m\x1b[5;1Hx\x1b8y")
    snap = screen.snapshot()
    assert snap["text"][1] == "  y"
    assert snap["ansi"][1] == "  \x1b[0;31my\x1b[0m"


def test_mode_1048_saves_and_restores_the_cursor() -> None:
    """xterm's cursor save as a mode (tmux 3.3a ignores it)."""
    assert text(b"\x1b[2;3H\x1b[?1048h\x1b[5;9Hfar\x1b[?1048lnear")[1] == "  near"


def test_origin_mode_moves_inside_the_scroll_region() -> None:
    assert text(b"\x1b[2;4r\x1b[?6h\x1b[1;1Ha\x1b[9;1Hb", rows=5) == ["", "a", "", "b", ""]


# --- scrolling -----------------------------------------------------------------------------------

def test_line_feed_at_the_bottom_scrolls_the_whole_screen() -> None:
    assert text(b"1\r\n2\r\n3\r\n4", rows=3) == ["2", "3", "4"]


def test_scroll_region_keeps_the_rows_outside_it() -> None:
    data = b"top\r\n1\r\n2\r\n3\r\nbottom\x1b[2;4r\x1b[4;1H\nnew"
    assert text(data) == ["top", "2", "3", "new", "bottom"]


def test_reverse_index_at_the_top_margin_scrolls_down() -> None:
    data = b"top\r\n1\r\n2\r\n3\r\nbottom\x1b[2;4r\x1b[2;1H\x1bMnew"
    assert text(data) == ["top", "new", "1", "2", "bottom"]


def test_insert_and_delete_lines_within_the_region() -> None:
    """IL/DL push rows within the region and move the cursor to the first column (xterm)."""
    screen = screen_of(b"0\r\n1\r\n2\r\n3\r\n4\x1b[1;4r\x1b[2;3H\x1b[L")
    assert screen.snapshot()["text"] == ["0", "", "1", "2", "4"]
    assert screen.cursor.x == 0
    screen.feed(b"\x1b[1;1H\x1b[2M")
    assert screen.snapshot()["text"] == ["1", "2", "", "", "4"]


def test_scroll_up_and_down() -> None:
    assert text(b"0\r\n1\r\n2\r\n3\r\n4\x1b[2S") == ["2", "3", "4", "", ""]
    assert text(b"0\r\n1\r\n2\r\n3\r\n4\x1b[T") == ["", "0", "1", "2", "3"]


# --- erasing -------------------------------------------------------------------------------------

def test_erase_in_line_and_display() -> None:
    assert text(b"abcdef\x1b[3G\x1b[K")[0] == "ab"
    assert text(b"abcdef\x1b[3G\x1b[1K")[0] == "   def"
    assert text(b"abcdef\x1b[2K")[0] == ""
    assert text(b"a\r\nb\r\nc\x1b[2;1H\x1b[J") == ["a", "", "", "", ""]
    assert text(b"a\r\nb\r\nc\x1b[2;1H\x1b[1J") == ["", "", "c", "", ""]


def test_erasing_paints_the_background_colour() -> None:
    """As xterm and tmux erase (BCE): the erased cells keep the background, nothing else."""
    snap = screen_of(b"\x1b[1;44mab\x1b[K\x1b[0m", cols=6).snapshot()
    assert snap["text"][0] == "ab"
    assert snap["ansi"][0] == "\x1b[0;1;44mab\x1b[0;44m    \x1b[0m"


# --- colours -------------------------------------------------------------------------------------

def test_ansi_rows_carry_colours_per_cell() -> None:
    snap = screen_of(b"\x1b[31mred\x1b[0m \x1b[1;38;2;1;2;3mrgb\x1b[22m!\x1b[0m").snapshot()
    assert snap["text"][0] == "red rgb!"
    assert snap["ansi"][0] == "\x1b[0;31mred\x1b[0m \x1b[0;1;38;2;1;2;3mrgb\x1b[0;38;2;1;2;3m!\x1b[0m"


def test_plain_rows_have_no_escapes() -> None:
    assert screen_of(b"plain").snapshot()["ansi"][0] == "plain"


# --- the alternate screen -------------------------------------------------------------------

def test_alternate_screen_1049_restores_the_main_screen_and_cursor() -> None:
    screen = screen_of(b"main 1\r\nmain 2\x1b[?1049h")
    snap = screen.snapshot()
    assert snap["alternate"] is True and snap["text"] == [""] * 5
    screen.feed(b"\x1b[3;3Hfull screen\x1b[?25l")
    assert screen.snapshot()["text"][2] == "  full screen"
    screen.feed(b"\x1b[?1049l\x1b[?25h!")
    snap = screen.snapshot()
    assert snap["alternate"] is False
    assert snap["text"][:2] == ["main 1", "main 2!"]


@pytest.mark.parametrize("mode", [b"47", b"1047"])
def test_alternate_screen_47_and_1047_keep_the_cursor_where_it_is(mode: bytes) -> None:
    screen = screen_of(b"main\r\n" + CSI + b"?" + mode + b"h\x1b[4;1Halt" + CSI + b"?" + mode + b"lx")
    snap = screen.snapshot()
    assert snap["alternate"] is False
    assert snap["text"][:4] == ["main", "", "", "   x"]


def test_alternate_screen_starts_empty_each_time() -> None:
    screen = screen_of(b"\x1b[?1049hold\x1b[?1049l\x1b[?1049h")
    assert screen.snapshot()["text"] == [""] * 5


def test_alternate_screen_mode_among_others() -> None:
    assert screen_of(b"\x1b[?1;1049;25h").alternate


# --- resize ----------------------------------------------------------------------------------

def test_resize_shorter_drops_rows_below_the_cursor_first() -> None:
    screen = screen_of(b"0\r\n1\x1b[5;1H4", rows=5)
    screen.resize(20, 3)  # cursor on the last row: the two top rows go
    assert screen.snapshot()["text"] == ["", "", "4"]
    assert (screen.cursor.x, screen.cursor.y) == (1, 2)
    screen = screen_of(b"0\r\n1", rows=5)
    screen.resize(20, 3)  # cursor on row 1: the empty rows below it go
    assert screen.snapshot()["text"] == ["0", "1", ""]


def test_resize_narrower_cuts_rows_and_wide_characters() -> None:
    screen = screen_of("abcd日".encode(), cols=10)
    screen.resize(5, 5)
    snap = screen.snapshot()
    assert snap["cols"] == 5 and snap["text"][0] == "abcd"
    screen.resize(12, 6)
    snap = screen.snapshot()
    assert (snap["cols"], snap["rows"], snap["text"][0]) == (12, 6, "abcd")
    assert len(snap["text"]) == 6


def test_resize_is_a_change_of_every_row() -> None:
    screen = screen_of(b"x")
    before = screen.seq
    screen.resize(30, 8)
    assert screen.seq > before
    assert [c["row"] for c in screen.changes(before)["changed"]] == list(range(8))


def test_a_screen_has_at_least_one_cell() -> None:
    with pytest.raises(ValueError):
        VirtualScreen(0, 5)
    with pytest.raises(ValueError):
        VirtualScreen(5, 5).resize(5, 0)


# --- seq and changes -------------------------------------------------------------------------------

def test_seq_grows_with_every_change_and_only_then() -> None:
    screen = VirtualScreen(20, 5)
    assert screen.seq == 0
    screen.feed(b"a")
    first = screen.seq
    assert first > 0
    screen.feed(b"")
    screen.feed(b"\x07\x1b[6n\x1b]0;title\x07\x1b[>c")  # a bell, queries, a title: nothing shown
    assert screen.seq == first
    screen.feed(b"\x1b[3;3H")  # the cursor moved: a snapshot would differ
    assert screen.seq > first


def test_changes_lists_only_the_rows_that_changed() -> None:
    screen = screen_of(b"\x1b[1;1Hone\x1b[2;1Htwo\x1b[3;1Hthree")
    seq = screen.seq
    screen.feed(b"\x1b[2;1HTWO")
    diff = screen.changes(seq)
    assert diff["seq"] == screen.seq
    assert diff["changed"] == [{"row": 1, "text": "TWO", "ansi": "TWO", "wrapped": False}]
    assert screen.changes(screen.seq)["changed"] == []


def test_changes_after_a_scroll_list_the_rows_that_moved() -> None:
    screen = screen_of(b"a\r\nb\r\nc\r\nd\r\ne", rows=5)
    seq = screen.seq
    screen.feed(b"\r\nf")
    assert [c["text"] for c in screen.changes(seq)["changed"]] == ["b", "c", "d", "e", "f"]
    screen = screen_of(b"top\x1b[2;3r\x1b[3;1H", rows=5)
    seq = screen.seq
    screen.feed(b"\n")
    assert [c["row"] for c in screen.changes(seq)["changed"]] == [1, 2]


def test_changes_from_long_ago_list_every_row() -> None:
    """Past the ranges of moved rows that are remembered, every row counts as changed."""
    screen = screen_of(b"start", rows=5)
    seq = screen.seq
    for i in range(200):  # each scroll region different, so nothing coalesces
        screen.feed(b"\x1b[%d;5r\x1b[5;1H\n" % (1 + i % 4))
    assert len(screen.changes(seq)["changed"]) == 5


def test_changes_applied_to_an_old_snapshot_give_the_new_one() -> None:
    rng = random.Random(7)
    screen = VirtualScreen(16, 6)
    old = screen.snapshot()
    pieces = [b"\x1b[%d;%dH" % (rng.randint(1, 6), rng.randint(1, 16)) + b"xyz\x1b[31m!\x1b[0m",
              b"\r\nline", "日本\u0301".encode(), b"\x1b[2K", b"\x1b[L", b"\x1bM", b"\x1b[?1049h", b"\x1b[?1049l"]
    for step in range(300):
        screen.feed(rng.choice(pieces))
        if step % 7 == 0:
            diff = screen.changes(old["seq"])
            for change in diff["changed"]:
                old["text"][change["row"]] = change["text"]
                old["ansi"][change["row"]] = change["ansi"]
                old["wrapped"][change["row"]] = change["wrapped"]
            new = screen.snapshot()
            assert (old["text"], old["ansi"], old["wrapped"]) == (new["text"], new["ansi"], new["wrapped"])
            old = new


def test_switching_screens_changes_every_row() -> None:
    screen = screen_of(b"x")
    seq = screen.seq
    screen.feed(b"\x1b[?1049h")
    assert len(screen.changes(seq)["changed"]) == 5
    assert screen.changes(seq)["alternate"] is True


# --- soft wraps --------------------------------------------------------------------------------

def test_soft_wrapped_rows_are_marked_and_joined() -> None:
    """A URL the terminal wrapped over four rows comes back whole from ``lines()``."""
    url = "https://auth.example.com/oauth/authorize?client_id=app_" + "x" * 40 + "&state=abc"
    screen = screen_of(b"Sign in:\r\n" + url.encode() + b"\r\ndone", cols=25, rows=8)
    snap = screen.snapshot()
    assert snap["wrapped"] == [False, True, True, True, True, False, False, False]
    lines = screen.lines()
    assert lines[1].text == url and (lines[1].first, lines[1].last) == (1, 5)
    assert [line.text for line in lines][2] == "done"


def test_a_line_that_ends_at_the_margin_is_not_wrapped() -> None:
    snap = screen_of(b"x" * 20 + b"\r\nnext").snapshot()
    assert snap["wrapped"][0] is False


def test_erasing_a_wrapped_row_ends_the_wrap() -> None:
    screen = screen_of(b"x" * 25)
    assert screen.snapshot()["wrapped"][0] is True
    screen.feed(b"\x1b[1;1H\x1b[2K")
    assert screen.snapshot()["wrapped"][0] is False


# --- robustness ------------------------------------------------------------------------------

def test_random_bytes_never_break_the_screen() -> None:
    """Garbage (including every escape introducer) never raises, and the grid stays whole."""
    rng = random.Random(15)
    alphabet = [b"\x1b", b"[", b"]", b"?", b";", b"1", b"4", b"9", b"h", b"l", b"m", b"H", b"J", b"K",
                b"L", b"M", b"r", b"@", b"P", b"\r", b"\n", b"\x08", b"\t", b"\x07", b"\x0e", b"\x0f",
                "日".encode(), "\u0301".encode(), b"\xff", b"a", b"(", b"0", b"#", b"8", b"b", b"c"]
    for cols, rows in ((1, 1), (2, 3), (13, 7)):
        screen = VirtualScreen(cols, rows)
        for _ in range(3000):
            screen.feed(b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
            if rng.random() < 0.01:
                screen.resize(rng.randint(1, 15), rng.randint(1, 8))
        snap = screen.snapshot()
        assert len(snap["text"]) == snap["rows"]
        assert 0 <= snap["cursor"]["x"] < snap["cols"] and 0 <= snap["cursor"]["y"] < snap["rows"]
        assert all(len(row.chars) == snap["cols"] for row in screen._buf)


# --- the alternate-screen detector -------------------------------------------------------------

@pytest.mark.parametrize("sequence", [b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h", b"\x1b[?1;1049;25h"])
def test_detector_finds_the_alternate_screen(sequence: bytes) -> None:
    detector = AlternateScreenDetector()
    assert detector.feed(b"plain output\r\n" * 10) is None
    assert detector.feed(b"before" + sequence + b"after") == sequence + b"after"
    assert detector.entered
    assert detector.feed(b"\x1b[?1049h") is None  # once


@pytest.mark.parametrize("data", [b"\x1b[?1049l", b"\x1b[?104h", b"\x1b[?10490h", b"\x1b[1049h", b"\x1b[?147h",
                                  b"\x1b[?25h\x1b[?2004h", b"?1049h"])
def test_detector_ignores_other_modes(data: bytes) -> None:
    detector = AlternateScreenDetector()
    assert detector.feed(data) is None and not detector.entered


def test_detector_finds_a_sequence_split_at_any_byte() -> None:
    data = b"text \x1b[31mred\x1b[0m\x1b[?1;1049htui"
    start = data.index(b"\x1b[?1;")
    for cut in range(1, len(data)):
        detector = AlternateScreenDetector()
        found = detector.feed(data[:cut])
        if found is None:
            found = detector.feed(data[cut:])
        else:  # found in the first chunk: the caller feeds the screen the next chunk itself
            found += data[cut:]
        assert found == data[start:], f"cut at {cut}"
    detector = AlternateScreenDetector()
    each = [detector.feed(data[i:i + 1]) for i in range(len(data))]
    assert [f for f in each if f is not None] == [b"\x1b[?1;1049h"]


def test_detector_keeps_little_of_a_line_agent_s_output() -> None:
    """A program that never switches leaves at most a short unfinished escape behind."""
    detector = AlternateScreenDetector()
    for _ in range(1000):
        detector.feed(b"\x1b[32mok\x1b[0m line\r\n" * 50 + b"\x1b[?20")
        assert len(detector._tail) <= 64
    assert not detector.entered
