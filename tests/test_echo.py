"""EchoTracker: the terminal's echo of typed input is told apart from the agent's output."""
from __future__ import annotations

from supervisor.echo import EchoTracker
from supervisor.lines import Line


def _line(plain: str) -> Line:
    return Line(plain, plain, 1)


def test_echo_at_the_end_of_a_prompt_line() -> None:
    """The answer echoed after a prompt is recognised at the end of the line, once."""
    echo = EchoTracker()
    echo.expect("y\n", now=0.0)
    assert echo.match(_line("Continue? [y/N] y"), now=0.1) == 1
    assert echo.match(_line("Continue? [y/N] y"), now=0.2) == 0


def test_echo_of_a_whole_line() -> None:
    """A typed line echoed on its own line matches in full."""
    echo = EchoTracker()
    echo.expect("hello\n", now=0.0)
    assert echo.match(_line("hello"), now=0.0) == 5


def test_each_input_line_is_one_expectation_in_order() -> None:
    """Multi-line input gives one expectation per line, matched oldest first; the rest waits."""
    echo = EchoTracker()
    echo.expect("a\nb\ntail", now=0.0)
    assert echo.match(_line("b"), now=0.0) == 0  # "a" is due first
    assert echo.match(_line("a"), now=0.0) == 1
    assert echo.match(_line("agent says something"), now=0.0) == 0
    assert echo.match(_line("b"), now=0.0) == 1
    assert echo.match(_line("> tail"), now=0.0) == 4


def test_expired_expectations_are_dropped() -> None:
    """An expectation older than ttl never matches, and the next one becomes the oldest."""
    echo = EchoTracker(ttl=5.0)
    echo.expect("old\n", now=0.0)
    echo.expect("new\n", now=4.0)
    assert echo.match(_line("old"), now=6.0) == 0
    assert echo.match(_line("new"), now=6.0) == 3


def test_enter_as_cr_and_line_editing() -> None:
    """CR ends an input line; erase and kill characters are applied as the terminal echoes them."""
    echo = EchoTracker()
    echo.expect("yez\x7fs\rtypo\x15fixed\r\n", now=0.0)
    assert echo.match(_line("yes"), now=0.0) == 3
    assert echo.match(_line("fixed"), now=0.0) == 5


def test_empty_input_lines_expect_nothing() -> None:
    """A bare Enter adds no expectation, so it cannot swallow a later line's end."""
    echo = EchoTracker()
    echo.expect("\n\r\n", now=0.0)
    echo.expect("x\n", now=0.0)
    assert echo.match(_line("x"), now=0.0) == 1


def test_expectations_are_bounded() -> None:
    """Input written faster than it echoes is remembered only up to a bound, newest kept."""
    echo = EchoTracker()
    for i in range(1000):
        echo.expect(f"{i}\n", now=0.0)
    assert echo.match(_line("0"), now=0.0) == 0
    assert echo.match(_line("744"), now=0.0) == 3
