"""LineSplitter: terminal output bytes -> the lines a person saw."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import pytest

from supervisor.lines import Line, LineSplitter

#: How a test's bytes are cut into feed() calls: all at once, in two at every possible byte,
#: or in fixed-size chunks (1 byte splits every CRLF, UTF-8 character and escape sequence).
CHUNKINGS = ["whole", "every-split", "bytes-1", "bytes-2", "bytes-3", "bytes-7"]


def variants(data: bytes, chunking: str) -> Iterator[list[bytes]]:
    if chunking == "whole":
        yield [data]
    elif chunking == "every-split":
        for i in range(len(data) + 1):
            yield [data[:i], data[i:]]
    else:
        size = int(chunking.removeprefix("bytes-"))
        yield [data[i:i + size] for i in range(0, len(data), size)]


def run(chunks: Iterable[bytes], max_line_length: int = 65536) -> list[Line]:
    splitter = LineSplitter(max_line_length)
    lines: list[Line] = []
    for chunk in chunks:
        lines.extend(splitter.feed(chunk))
    lines.extend(splitter.finish())
    return lines


def plains(lines: Iterable[Line]) -> list[str]:
    return [line.plain for line in lines]


def texts(lines: Iterable[Line]) -> list[str]:
    return [line.text for line in lines]


def check(data: bytes, chunking: str, expected: list[str], max_line_length: int = 65536) -> None:
    """Every chunking of ``data`` gives ``expected`` plain lines, numbered 1..n, all final."""
    for chunks in variants(data, chunking):
        lines = run(chunks, max_line_length)
        assert plains(lines) == expected, chunks
        assert [line.line_num for line in lines] == list(range(1, len(lines) + 1))
        assert not any(line.partial for line in lines)
        assert not any("\r" in line.text or "\n" in line.text for line in lines)


# -- line endings ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_lf_and_crlf_end_lines(chunking: str) -> None:
    """LF and CRLF both end a line, and no line keeps a trailing CR."""
    check(b"Line 1\r\nLine 2\nLine 3\r\n", chunking, ["Line 1", "Line 2", "Line 3"])


def test_crlf_split_between_chunks() -> None:
    """A CR at the end of one chunk and LF at the start of the next is one line end, not two."""
    splitter = LineSplitter()
    assert splitter.feed(b"Line 1\r") == []
    assert splitter.feed(b"\nLine 2\r") == [Line("Line 1", "Line 1", 1)]
    assert splitter.feed(b"\n") == [Line("Line 2", "Line 2", 2)]
    assert splitter.finish() == []


def test_pending_cr_is_not_in_the_partial_line() -> None:
    """While the LF of a CRLF has not arrived, the partial line shows no CR."""
    splitter = LineSplitter()
    splitter.feed(b"Line 2\r")
    partial = splitter.partial()
    assert partial is not None and partial.text == "Line 2" and partial.line_num == 1


def test_cr_cr_lf_is_one_line_end() -> None:
    """CR CR LF (a CRLF that went through ONLCR again) ends the line without a blank one."""
    assert plains(run([b"one\r\r\ntwo\r\r\n"])) == ["one", "two"]


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_blank_lines_kept(chunking: str) -> None:
    """An empty line is a line: blank lines between paragraphs survive, as ``""``."""
    check(b"a\r\n\r\n\r\nb\r\n", chunking, ["a", "", "", "b"])


def test_final_line_without_newline_comes_from_finish() -> None:
    """Text after the last newline is returned by finish() as a final line."""
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntwo") == [Line("one", "one", 1)]
    assert splitter.finish() == [Line("two", "two", 2)]
    assert splitter.finish() == []


@pytest.mark.parametrize("pending", [b"", b"   ", b"\x1b[0m", b"x\x1b[1G\x1b[K", b"\r"])
def test_finish_gives_nothing_for_invisible_pending_text(pending: bytes) -> None:
    """finish() returns no line for an empty, blank, escape-only or erased pending line."""
    splitter = LineSplitter()
    splitter.feed(b"done\n" + pending)
    assert splitter.finish() == []
    assert splitter.lines_emitted == 1


def test_trailing_cr_at_the_end_is_only_a_cursor_move() -> None:
    """Output ending in a bare CR still gives its last line, without the CR."""
    assert texts(run([b"50%\r100%\r"])) == ["100%"]


# -- redraws -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_bare_cr_rewinds_the_line(chunking: str) -> None:
    """A bare CR sends the cursor to column 0 and later text overwrites: a progress bar's last state."""
    check(b"50%\r100%\n", chunking, ["100%"])


def test_shorter_overwrite_leaves_the_old_tail() -> None:
    """Overwriting with shorter text leaves the rest visible, exactly as on a terminal."""
    assert plains(run([b"100%\r50%\n"])) == ["50%%"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"abcdef\r\x1b[2C\x1b[K\n", "ab"),
        (b"abcdef\r\x1b[2C\x1b[0K\n", "ab"),
        (b"abcdef\x1b[4G\x1b[1K\n", "    ef"),
        (b"abc\x1b[2Kxyz\n", "   xyz"),
        (b"abc\x1b[2K\rxyz\n", "xyz"),
        (b"abcdef\x1b[3GX\n", "abXdef"),
        (b"abcdef\x1b[3DX\n", "abcXef"),
        (b"ab\x1b[2CX\n", "ab  X"),
        (b"ab\x1b[CX\n", "ab X"),
        (b"abc\x08\x08X\n", "aXc"),
        (b"\x08\x08ab\n", "ab"),
        (b"abcdef\x1b[3G\x1b[2X\n", "ab  ef"),
        (b"abcdef\x1b[3G\x1b[2P\n", "abef"),
        (b"abcdef\x1b[3G\x1b[2@\n", "ab  cdef"),
        (b"abcdef\x1b[3G\x1b[J\n", "ab"),
    ],
)
def test_cursor_moves_and_erasures(data: bytes, expected: str) -> None:
    """EL (0, 1, 2), CHA, CUF, CUB, BS, ECH, DCH, ICH and ED act on the row as a terminal would."""
    for chunks in variants(data, "every-split"):
        assert plains(run(chunks)) == [expected]


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_spinner_line_leaves_nothing(chunking: str) -> None:
    """A spinner drawn and erased before the newline gives no line and uses no line number."""
    check(b"a\r\n\xe2\xa0\x99\x1b[1G\x1b[0K\xe2\xa0\xb9\x1b[1G\x1b[0K\r\nb\r\n", chunking, ["a", "b"])


def test_line_cleared_with_spaces_counts_as_erased() -> None:
    """A status line overwritten with spaces and then ended is dropped like an erased one."""
    assert plains(run([b"working...\r          \r\nnext\n"])) == ["next"]


def test_empty_line_with_an_erase_is_still_a_blank_line() -> None:
    """An erase on a line where nothing was drawn does not remove the blank line."""
    assert plains(run([b"a\n\x1b[2K\nb\n"])) == ["a", "", "b"]


def test_colours_survive_redraws() -> None:
    """The colour each cell was drawn with is kept; the redrawn line re-emits SGR at changes."""
    (line,) = run([b"\x1b[31m50%\x1b[0m\r\x1b[32m100%\x1b[0m\n"])
    assert line.text == "\x1b[32m100%\x1b[0m"
    assert line.plain == "100%"
    (line,) = run([b"\x1b[31mabcd\x1b[0m\rX\n"])
    assert line.text == "X\x1b[31mbcd\x1b[0m"


def test_style_changes_and_resets_in_a_redrawn_line() -> None:
    """Bold-off keeps the colour, a new colour replaces the old one, and a final reset is added."""
    (line,) = run([b"\r\x1b[1;31ma\x1b[22mb\x1b[34mc\n"])
    assert line.text == "\x1b[1;31ma\x1b[0;31mb\x1b[0;34mc\x1b[0m"
    (line,) = run([b"\r\x1b[38;5;208ma\x1b[48;2;1;2;3mb\x1b[39;49mc\n"])
    assert line.text == "\x1b[38;5;208ma\x1b[0;38;5;208;48;2;1;2;3mb\x1b[0mc"


def test_redrawn_line_drops_non_colour_escapes() -> None:
    """A redrawn line keeps only SGR: titles, mode changes and moves are not text."""
    (line,) = run([b"\x1b]0;title\x07\x1b[?25l50%\r\x1b[1mdone\x1b[m\x1b[?25h\n"])
    assert line.text == "\x1b[1mdone\x1b[0m"
    assert line.plain == "done"


def test_tab_in_a_redrawn_line_becomes_spaces() -> None:
    """A tab moves to the next multiple of 8 on a redrawn line and stays a tab on a kept one."""
    assert plains(run([b"x\ra\tb\n"])) == ["a       b"]
    assert plains(run([b"a\tb\n"])) == ["a\tb"]


# -- text kept as printed ----------------------------------------------------------------------


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_escapes_kept_byte_for_byte_without_redraw(chunking: str) -> None:
    """A line with colours and no redraw keeps its raw text exactly; plain has no escapes."""
    raw = "\x1b[1mnpm\x1b[22m \x1b[31merror\x1b[39m Missing \x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\"
    for chunks in variants(raw.encode() + b"\r\n", chunking):
        (line,) = run(chunks)
        assert line.text == raw
        assert line.plain == "npm error Missing link"


def test_plain_is_text_when_there_are_no_escapes() -> None:
    """Without escapes, plain is the same object as text (consumers may test with ``is``)."""
    lines = run([b"hello\r\nworld\r\n"])
    assert all(line.plain is line.text for line in lines)
    lines = run([b"\x1b[1mbold\x1b[0m\r\nworld\r\n"])
    assert lines[1].plain is lines[1].text


def test_stray_controls_are_not_in_plain() -> None:
    """A BEL or other stray control in a line is kept in text but not in plain."""
    (line,) = run([b"ding\x07 done\n"])
    assert line.text == "ding\x07 done"
    assert line.plain == "ding done"


# -- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_multibyte_characters_split_across_chunks_decode_whole(chunking: str) -> None:
    """A UTF-8 character cut between two feed() calls is decoded as one character."""
    check("héllo ✓ 🎉 日本\r\n".encode(), chunking, ["héllo ✓ 🎉 日本"])


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_invalid_utf8_never_raises(chunking: str) -> None:
    """Invalid UTF-8 becomes U+FFFD; nothing raises."""
    check(b"ok \xff\xfe bad \xc3\n", chunking, ["ok \ufffd\ufffd bad \ufffd"])


def test_truncated_character_at_the_end_is_flushed_by_finish() -> None:
    """A character still incomplete when output ends becomes U+FFFD in the last line."""
    assert plains(run([b"abc\xe2\x9c"])) == ["abc\ufffd"]


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_escape_sequence_split_across_chunks(chunking: str) -> None:
    """An escape cut between chunks is read whole, never as visible text, on both paths."""
    check(b"\x1b[31mred\x1b[0m\r\n\x1b]0;t\x1b\\x\r\n50%\r\x1b[1m100%\x1b[0m\n", chunking,
          ["red", "x", "100%"])


# -- long lines --------------------------------------------------------------------------------


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_long_line_cut_into_numbered_pieces(chunking: str) -> None:
    """A line longer than max_line_length comes out in pieces, the later ones continuations."""
    data = b"a" * 10 + b"b" * 10 + b"c" * 5 + b"\nnext\n"
    for chunks in variants(data, chunking):
        lines = run(chunks, max_line_length=10)
        assert lines == [
            Line("a" * 10, "a" * 10, 1),
            Line("b" * 10, "b" * 10, 2, continuation=True),
            Line("c" * 5, "c" * 5, 3, continuation=True),
            Line("next", "next", 4),
        ]


def test_line_of_exactly_max_length_is_not_cut() -> None:
    """A line of exactly max_line_length characters is one ordinary line."""
    assert run([b"x" * 10 + b"\n"], max_line_length=10) == [Line("x" * 10, "x" * 10, 1)]


def test_cut_never_splits_an_escape_sequence() -> None:
    """A cut that would fall inside an escape sequence is moved before it."""
    lines = run([b"abcdefgh\x1b[31mXYZ\x1b[0m\n"], max_line_length=12)
    assert texts(lines) == ["abcdefgh", "\x1b[31mXYZ\x1b[0m"]
    assert plains(lines) == ["abcdefgh", "XYZ"]


def test_redrawn_line_is_cut_by_screen_cells() -> None:
    """A redrawn line longer than max_line_length is cut by cells, with continuations."""
    lines = run([b"x\r" + b"0123456789" * 2 + b"abc\n"], max_line_length=10)
    assert [(ln.plain, ln.continuation) for ln in lines] == [
        ("0123456789", False), ("0123456789", True), ("abc", True),
    ]


def test_megabyte_line_without_newline_keeps_memory_bounded() -> None:
    """A 1 MB line fed in 4 KB chunks is emitted in pieces as it comes; pending stays small."""
    limit = 65536
    data = bytes(range(0x41, 0x5B)) * (1 << 20 // 26 + 1)
    data = data[: 1 << 20]
    splitter = LineSplitter(limit)
    lines: list[Line] = []
    for i in range(0, len(data), 4096):
        lines.extend(splitter.feed(data[i:i + 4096]))
        partial = splitter.partial()
        assert partial is None or len(partial.text) <= limit
    lines.extend(splitter.finish())
    assert "".join(texts(lines)) == data.decode()
    assert all(len(line.text) == limit for line in lines[:-1])
    assert [line.continuation for line in lines] == [False] + [True] * (len(lines) - 1)


def test_endless_progress_bar_keeps_memory_bounded() -> None:
    """A progress bar that redraws forever without a newline holds one row, not its history."""
    splitter = LineSplitter(1000)
    for i in range(20000):
        assert splitter.feed(b"\rprogress %5d" % i) == []
    partial = splitter.partial()
    assert partial is not None and partial.plain == "progress 19999"
    assert splitter.finish() == [Line("progress 19999", "progress 19999", 1)]


# -- partial lines -----------------------------------------------------------------------------


def test_prompt_available_as_partial_then_final_with_same_number() -> None:
    """A prompt without newline is a partial line; the newline turns it into the final line."""
    splitter = LineSplitter()
    assert splitter.feed(b"first\r\nContinue? [y/N] ") == [Line("first", "first", 1)]
    assert splitter.partial() == Line("Continue? [y/N] ", "Continue? [y/N] ", 2, partial=True)
    assert splitter.partial() is None  # unchanged since the last call
    assert splitter.feed(b"y\r\n") == [Line("Continue? [y/N] y", "Continue? [y/N] y", 2)]
    assert splitter.partial() is None


def test_partial_follows_changes() -> None:
    """Each change of the pending line gives a new partial; a change back to the same text does not."""
    splitter = LineSplitter()
    splitter.feed(b"\x1b[33m10%")
    first = splitter.partial()
    assert first is not None and first.plain == "10%" and first.text == "\x1b[33m10%"
    splitter.feed(b"\r20%")
    second = splitter.partial()
    assert second is not None and second.plain == "20%" and second.line_num == 1
    splitter.feed(b"\r20%")
    assert splitter.partial() is None


@pytest.mark.parametrize("pending", [b"", b"   ", b"\x1b[1m", b"\xe2\xa0\x99\x1b[1G\x1b[0K"])
def test_no_partial_when_nothing_visible_is_pending(pending: bytes) -> None:
    """partial() is None when the pending line is empty, blank, only escapes, or erased."""
    splitter = LineSplitter()
    splitter.feed(b"line\n" + pending)
    assert splitter.partial() is None


def test_partial_of_a_cut_line_is_a_continuation() -> None:
    """The pending rest of a line already cut is offered as a partial continuation."""
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdef") == [Line("abcd", "abcd", 1)]
    assert splitter.partial() == Line("ef", "ef", 2, partial=True, continuation=True)


def test_erased_spinner_line_number_goes_to_the_next_line() -> None:
    """A spinner shown as partial and then erased: the next real line takes its number."""
    splitter = LineSplitter()
    splitter.feed(b"\xe2\xa0\x99")
    spinner = splitter.partial()
    assert spinner is not None and spinner.line_num == 1
    splitter.feed(b"\x1b[1G\x1b[0K\r\n")
    assert splitter.feed(b"added 2 packages\r\n") == [Line("added 2 packages", "added 2 packages", 1)]


# -- full-screen programs ----------------------------------------------------------------------


def test_full_screen_box_comes_out_as_lines() -> None:
    """Rows drawn with absolute cursor moves come out as lines, the welcome box's words included."""
    data = (
        "\x1b[?1049h\x1b[H\x1b[2J"
        "\x1b[2;3H╭──────────────╮"
        "\x1b[3;3H│ \x1b[1mOpenAI Codex\x1b[0m │"
        "\x1b[4;3H╰──────────────╯"
        "\x1b[6;3H\x1b[2m› \x1b[0mAsk anything"
        "\x1b[?1049l"
    ).encode()
    expected = ["╭──────────────╮", "│ OpenAI Codex │", "╰──────────────╯", "› Ask anything"]
    check(data, "bytes-1", expected)
    check(data, "every-split", expected)
    lines = run([data])
    assert lines[1].text == "│ \x1b[1mOpenAI Codex\x1b[0m │"


def test_row_drawn_in_pieces_is_one_line() -> None:
    """Moves within the same row only move the column, so a row drawn in runs is one line."""
    assert plains(run([b"\x1b[5;3HOpenAI\x1b[5;10HCodex\x1b[6;1Hnext"])) == ["OpenAI Codex", "next"]
    assert plains(run([b"\x1b[3;10Hworld\x1b[3;4Hhello"])) == ["hello world"]


def test_text_before_a_cursor_move_is_emitted() -> None:
    """A cursor move to another row ends the current line; invisible rows give nothing."""
    assert plains(run([b"status: ok\x1b[10;1H\x1b[K\x1b[11;1Hdone\r\n"])) == ["status: ok", "done"]


@pytest.mark.parametrize(
    "move", [b"\x1b[A", b"\x1b[2B", b"\x1b[E", b"\x1b[F", b"\x1b[7d", b"\x1bM", b"\x1bD", b"\x1b8", b"\x1b[u"]
)
def test_relative_row_moves_end_the_line(move: bytes) -> None:
    """Up, down, next/previous line, row-absolute, index, reverse index and restore end a line."""
    assert plains(run([b"one" + move + b"two\n"])) == ["one", "two"]


def test_colour_carries_across_a_cursor_move() -> None:
    """A colour set before a cursor move still applies to the text drawn after it."""
    lines = run([b"\x1b[32m\x1b[2;1Hgreen\x1b[0m\x1b[3;1Hplain"])
    assert texts(lines) == ["\x1b[32mgreen\x1b[0m", "plain"]


# -- invariants --------------------------------------------------------------------------------

_MIXED = (
    "\x1b[1mnpm\x1b[22m warn ✓ \x1b]0;title\x07café\r\n"
    "\r\n"
    "\rbuilding 0%\rbuilding 50%\rbuilding 100%\r\n"
    "⠙\x1b[1G\x1b[0K⠹\x1b[1G\x1b[0K\r\n"
    "\x1b[32m✓ test 0\x1b[0m\r\n"
    "\x1b[2;3HOpenAI Codex\x1b[4;1H\x1b[31mred\x1b[0m\r\n"
    "Continue? [y/N] y\r\n"
    "tail"
).encode()


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_chunking_never_changes_the_result(chunking: str) -> None:
    """Whatever the chunk boundaries, the lines (text, plain, numbers, flags) are the same."""
    expected = run([_MIXED])
    assert plains(expected) == [
        "npm warn ✓ café", "", "building 100%", "✓ test 0", "OpenAI Codex", "red",
        "Continue? [y/N] y", "tail",
    ]
    for chunks in variants(_MIXED, chunking):
        assert run(chunks) == expected


def test_partial_calls_do_not_change_the_result() -> None:
    """Asking for partial lines between every byte changes none of the final lines."""
    splitter = LineSplitter()
    lines: list[Line] = []
    for i in range(len(_MIXED)):
        lines.extend(splitter.feed(_MIXED[i:i + 1]))
        partial = splitter.partial()
        if partial is not None:
            assert partial.partial and partial.line_num == splitter.lines_emitted + 1
            assert "\r" not in partial.text and partial.plain.strip()
    lines.extend(splitter.finish())
    assert lines == run([_MIXED])


def test_lines_emitted_counts_final_lines() -> None:
    """lines_emitted is the number of final lines returned so far, cut pieces included."""
    splitter = LineSplitter(3)
    splitter.feed(b"a\nbcdefg\nh")
    assert splitter.lines_emitted == 3
    splitter.finish()
    assert splitter.lines_emitted == 4


def test_line_is_immutable() -> None:
    """A Line cannot be changed after it is made: it is shared by every consumer."""
    line = Line("a", "a", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        line.text = "b"  # type: ignore[misc]


def test_max_line_length_must_be_positive() -> None:
    """A splitter that could never hold a character is refused."""
    with pytest.raises(ValueError):
        LineSplitter(0)


# -- cell widths (wcwidth) -----------------------------------------------------------------------


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("日本語abc\rXY\n", "XY本語abc"),  # XY covers the two cells of 日
        ("日本語abc\rX\n", "X 本語abc"),  # the right half of 日 is left blank
        ("e\u0301\rE\n", "E"),  # the accent belonged to the cell that E replaced
        ("cafe\u0301!\rCAFE\n", "CAFE!"),
        ("日本\x1b[1D\x1b[1DX\n", "日X"),  # a cursor move counts cells: X lands on 本
        ("x日本\r\x1b[2CZ\n", "x Z本"),  # writing over the right half blanks the left
        ("日本語\r\x1b[1C\x1b[2P\n", "  語"),  # deleting inside a wide character
        ("日本語\r\x1b[1C\x1b[1@\n", "   本語"),  # inserting inside one
        ("ab日\x1b[2D\x1b[K\n", "ab"),
        ("🙂x\r\x1b[2Cy\n", "🙂y"),
        ("a\u200bb\rA\n", "Ab"),  # a zero-width space joined the cell that A replaced
    ],
)
def test_wide_and_combining_characters_take_their_cells(data: str, expected: str, chunking: str) -> None:
    """Redraws and cursor moves count cells as a terminal does (wcwidth): a wide character
    takes two, a combining one none, and overwriting half of a wide character blanks it."""
    check(data.encode(), chunking, [expected])


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_colours_of_wide_characters_stay_with_them(chunking: str) -> None:
    """A redrawn line with wide characters keeps each one's colour, without the hidden half."""
    for chunks in variants("\x1b[31m日\x1b[0m本x\r\x1b[4CY\n".encode(), chunking):
        assert texts(run(chunks)) == ["\x1b[31m日\x1b[0m本Y"]


def test_a_cut_never_separates_a_wide_character_from_its_half() -> None:
    """A redrawn line cut at max_line_length cuts between characters, not inside one."""
    lines = run(["ab日本語\rx\n".encode()], max_line_length=3)
    assert [(line.plain, line.continuation) for line in lines] == [
        ("ab", False), ("日", True), ("本", True), ("x", True)]  # x over 語 blanks its half
    one = run(["日本\rx\n".encode()], max_line_length=1)
    assert [line.plain for line in one] == ["日", "本", "x"]  # a piece of one cell takes both halves


# -- mode escapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(
    "data",
    [
        b"\x1b[?25lCollecting x\r\n\x1b[?25hSuccessfully installed x\r\n",  # pip
        b"\x1b[?2004h\x1b[>7u\x1b[?u\x1b[>4;0m\x1b=Collecting x\x1b[?1h\r\n"
        b"Successfully installed x\x1b[4h\x1b[2 q\x1b>\x1b[?2004l\r\n",
        b"\x1b[?25l\rCollecting x\r\n\x1b[?25h\rSuccessfully installed x\r\n",  # the redraw path
    ],
)
def test_mode_escapes_leave_no_trace(data: bytes, chunking: str) -> None:
    """Cursor visibility, bracketed paste, keyboard protocols, keypad and cursor style
    sequences are not kept in a line's text (pip's stray ESC[?25h)."""
    for chunks in variants(data, chunking):
        lines = run(chunks)
        assert texts(lines) == ["Collecting x", "Successfully installed x"]


def test_colours_stay_when_mode_escapes_go() -> None:
    """Only the mode escapes go: a line kept as printed keeps its colours byte for byte."""
    line = run([b"\x1b[?25h\x1b[1;32mok\x1b[0m done\x1b[?25l\n"])[0]
    assert (line.text, line.plain) == ("\x1b[1;32mok\x1b[0m done", "ok done")


# -- cursor-up redraws ---------------------------------------------------------------------------


def shown(lines: Iterable[Line]) -> dict[int, str]:
    """What a consumer shows: one row per line number, the newest version of each."""
    rows: dict[int, str] = {}
    for line in lines:
        if not line.partial:
            rows[line.line_num] = line.plain
    return rows


def check_redraw(data: bytes, chunking: str, final: dict[int, str], redraws: list[tuple[int, str]],
                 rows: int = 24) -> None:
    """Every chunking gives the same lines, the redraws ``redraws`` (number, text) among them,
    and shows ``final``."""
    for chunks in variants(data, chunking):
        splitter = LineSplitter(cols=80, rows=rows)
        lines = [line for chunk in chunks for line in splitter.feed(chunk)] + splitter.finish()
        assert shown(lines) == final, chunks
        assert [(line.line_num, line.plain) for line in lines if line.redraw] == redraws, chunks
        assert sorted(line.line_num for line in lines if not line.redraw) == list(range(1, len(final) + 1))


#: log-update (ink, listr): erase the previous frame going up, then write the next one.
ERASE_3 = b"\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2K\x1b[G"


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_a_log_update_frame_replaces_the_lines_it_redraws(chunking: str) -> None:
    """Erasing the last lines going up and drawing them again replaces them: the same line
    numbers, marked redraw, and no new lines."""
    data = b"build\n  a: 0%\n  b: 0%\n" + ERASE_3 + b"build\n  a: 50%\n  b: 10%\n" + ERASE_3 + b"build\n  a: 100%\n  b: 100%\n"
    check_redraw(data, chunking, {1: "build", 2: "  a: 100%", 3: "  b: 100%"},
                 [(2, "  a: 50%"), (3, "  b: 10%"), (2, "  a: 100%"), (3, "  b: 100%")])


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_cursor_up_then_overwrite_replaces_one_line(chunking: str) -> None:
    """``ESC[1A`` and new text over the last line (npm's tree, a status line) replace it;
    the column is kept, as on a terminal."""
    check_redraw(b"fetch a\nfetch b\n\x1b[1A\x1b[7Cdone\n", chunking, {1: "fetch a", 2: "fetch b..."[:7] + "done"},
                 [(2, "fetch bdone")])
    check_redraw(b"one\ntwo\n\x1b[2F\x1b[32mONE\x1b[0m\x1b[1ETWO\x1b[1E", chunking, {1: "ONE", 2: "TWO"},
                 [(1, "ONE"), (2, "TWO")])


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_a_shorter_frame_leaves_blank_lines(chunking: str) -> None:
    """A frame of fewer lines than the last leaves the rest erased, as the terminal does;
    erasing down (ED 0) from a line being redrawn erases the lines below it too."""
    check_redraw(b"a\nb\nc\n" + ERASE_3 + b"a\nb\n", chunking, {1: "a", 2: "b", 3: ""}, [(3, "")])
    check_redraw(b"x\ny\n\x1b[2A\x1b[Jnew1\nnew2\nnew3\n", chunking, {1: "new1", 2: "new2", 3: "new3"},
                 [(1, "new1"), (2, "new2")])


def test_an_unchanged_redraw_emits_nothing() -> None:
    """A frame drawn again as it was (a UI redrawing at 10 Hz) gives no events."""
    splitter = LineSplitter()
    assert len(splitter.feed(b"a\nb\nc\n")) == 3
    for _ in range(5):
        assert splitter.feed(ERASE_3 + b"a\nb\nc\n") == []
    assert splitter.finish() == [] and splitter.lines_emitted == 3


def test_redrawn_shows_lines_the_cursor_is_still_on() -> None:
    """A redraw that ends with the cursor up (no newline after it) is handed out by
    redrawn(), and again only when it changes; finish() ends it."""
    splitter = LineSplitter()
    splitter.feed(b"a\nworking\n\x1b[1A\rworking 50%")
    assert splitter.partial() is None  # nothing pending below: the cursor is up on line 2
    assert [(line.line_num, line.plain, line.redraw) for line in splitter.redrawn()] == [(2, "working 50%", True)]
    assert splitter.redrawn() == []
    splitter.feed(b"\rworking 99%")
    assert [line.plain for line in splitter.redrawn()] == ["working 99%"]
    assert [line.plain for line in splitter.finish()] == []
    assert splitter.lines_emitted == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\n\x1b[5Ax\n", ["a", "x"]),  # above the first line
        (b"a\nb\nc\n\x1b[3Ax\n", ["a", "b", "c", "x"]),  # above the top of a 3-row screen
        (b"%s\nb\n\x1b[2Ax\n" % (b"w" * 100), ["w" * 100, "b", "x"]),  # a line that wrapped
        (b"a\nb\n\x1b[1A\x1b[5;1Hx\n", ["a", "b", "x"]),  # an absolute move ends the model
    ],
)
def test_redraws_the_line_model_cannot_follow_start_new_lines(data: bytes, expected: list[str]) -> None:
    """Where the rows above the cursor are not the last lines one to one, later text is new
    lines, as before (the virtual screen shows such programs)."""
    for chunks in variants(data, "every-split"):
        splitter = LineSplitter(cols=80, rows=3)
        lines = [line for chunk in chunks for line in splitter.feed(chunk)] + splitter.finish()
        assert [line.plain for line in lines] == expected
        assert not any(line.redraw for line in lines)


def test_resize_changes_how_far_up_a_redraw_reaches() -> None:
    """After a resize, the new height bounds the redraw window."""
    splitter = LineSplitter(cols=80, rows=3)
    splitter.resize(80, 10)
    lines = splitter.feed(b"a\nb\nc\n\x1b[3Ax\n") + splitter.finish()
    assert [(line.plain, line.redraw) for line in lines] == [("a", False), ("b", False), ("c", False), ("x", True)]
