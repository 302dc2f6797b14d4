"""Tests for supervisor.extractors and the built-in extractors of supervisor.profiles."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from supervisor import extractors
from supervisor.exceptions import InvalidExtractor
from supervisor.extractors import Extraction, ExtractorSet, compile_extractors
from supervisor.lines import LineSplitter
from supervisor.profiles import CODEX, GENERIC, NPM, builtin_profiles

#: Byte-for-byte PTY recordings of npm 10 and codex exec 0.169 (copies of
#: /work/shared/transcripts/*.raw).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "transcripts"


def transcript_lines(name: str) -> list[str]:
    """The recording's lines as the pipeline hands them to extractors (``Line.plain``)."""
    splitter = LineSplitter()
    lines = splitter.feed((FIXTURES / f"{name}.raw").read_bytes()) + splitter.finish()
    return [line.plain for line in lines]


def profile_set(profile: str) -> ExtractorSet:
    return compile_extractors(builtin_profiles({})[profile]["extractors"])


def pairs(found: Iterable[Extraction]) -> list[tuple[str, str]]:
    return [(item.name, item.value) for item in found]


def one(name: str, pattern: str, flags: object = None) -> ExtractorSet:
    spec: dict[str, object] = {"name": name, "pattern": pattern}
    if flags is not None:
        spec["flags"] = flags
    return compile_extractors([spec])


# --- the value rule, groups, matches ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "groups"),
    [
        # the value group wins over group 1
        (r"(\w+)=(?P<value>\d+)", "42", {"value": "42"}),
        (r"(\w+)=(\d+)", "size", {}),  # else group 1
        (r"(?P<key>\w+)=\d+", "size", {"key": "size"}),  # a named group is a group too
        (r"\w+=\d+", "size=42", {}),  # else the whole match
        (r"size=(?P<value>x)?\d+", "", {"value": None}),  # a value group not taking part: ""
    ],
)
def test_value_rule(pattern: str, value: str, groups: dict[str, str | None]) -> None:
    """The value is the `value` group, else group 1, else the whole match."""
    assert one("x", pattern).scan("size=42") == [Extraction("x", value, groups)]


def test_named_groups_all_reported() -> None:
    """Every named group appears in groups, None when it did not take part in the match."""
    found = one("t", r"(?P<passed>\d+) passed(?:, (?P<failed>\d+) failed)?").scan("4 passed")
    assert found == [Extraction("t", "4", {"passed": "4", "failed": None})]


def test_multiple_matches_on_one_line_in_extractor_order() -> None:
    """All matches of every extractor are reported, grouped by extractor in set order."""
    found = compile_extractors([
        {"name": "num", "pattern": r"\d+"},
        {"name": "word", "pattern": r"[a-z]+"},
    ]).scan("a1 b22 c333")
    assert pairs(found) == [
        ("num", "1"), ("num", "22"), ("num", "333"), ("word", "a"), ("word", "b"), ("word", "c"),
    ]


def test_matches_per_line_are_capped() -> None:
    """One extractor reports at most MAX_MATCHES_PER_LINE matches per line."""
    found = one("a", "a").scan("a" * 1000)
    assert len(found) == extractors.MAX_MATCHES_PER_LINE


def test_line_cap_counts_every_extractor_it_cut() -> None:
    """89 extractors matching everywhere yield at most the line's cap, and the cut counts each
    extractor whose matches were dropped: the first four hit their own cap, the rest the line's."""
    specs = [{"name": f"q{i}", "pattern": "(?P<value>q?)."} for i in range(89)]
    scan = extractors.compile_extractors(specs).scan_capped("x" * 20, 8, 32)
    assert len(scan.found) == 32
    assert [e.name for e in scan.found] == [f"q{i}" for i in range(4) for _ in range(8)]
    assert scan.cut == 89


def test_caps_cut_nothing_below_them() -> None:
    """A line with fewer matches than the caps loses nothing and counts no cut."""
    scan = one("a", "a").scan_capped("aaa", 8, 32)
    assert (len(scan.found), scan.cut) == (3, 0)
    scan = one("a", "a").scan_capped("a" * 9, 8, 32)
    assert (len(scan.found), scan.cut) == (8, 1)


def test_an_extractor_of_only_empty_matches_is_not_counted_as_cut() -> None:
    """Past the line's cap, an extractor whose only matches are empty is not a cut."""
    specs = [{"name": "a", "pattern": "a"}, {"name": "e", "pattern": "z*"}]
    scan = extractors.compile_extractors(specs).scan_capped("aa", 8, 2)
    assert (len(scan.found), scan.cut) == (2, 0)


def test_empty_matches_are_skipped() -> None:
    """A match of zero length is not an extraction."""
    assert pairs(one("digits", r"\d*").scan("ab 12 c")) == [("digits", "12")]


def test_no_match_returns_empty_list() -> None:
    """A line that no extractor matches gives an empty list."""
    assert profile_set("codex").scan("x" * 120) == []


def test_non_ascii_text_and_lone_surrogates() -> None:
    """Values are sliced by character, and text with lone surrogates does not raise."""
    found = one("v", r"wörld=(?P<value>\S+)").scan("héllo wörld=ünï ✓")
    assert pairs(found) == [("v", "ünï")]
    assert pairs(one("v", r"b+").scan("a\udcffbb")) == [("v", "bb")]


def test_empty_set() -> None:
    """A set with no extractors has length 0 and finds nothing."""
    empty = compile_extractors([])
    assert len(empty) == 0
    assert empty.scan("error: x") == []


def test_specs_round_trip_and_canonical_flags() -> None:
    """specs() gives name, pattern and flags as canonical letters, and compiles back the same."""
    found = compile_extractors([
        {"name": "a", "pattern": "x", "flags": ["DOTALL", "IGNORECASE"]},
        {"name": "b", "pattern": "y"},
    ])
    assert found.specs() == [
        {"name": "a", "pattern": "x", "flags": "is"},
        {"name": "b", "pattern": "y", "flags": ""},
    ]
    assert compile_extractors(found.specs()).specs() == found.specs()
    assert len(found) == 2


def test_compiled_sets_are_shared() -> None:
    """The same specs give the same (immutable) set, so agents on one profile share it."""
    assert profile_set("npm") is profile_set("npm")


# --- flags --------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", ["i", "I", "IGNORECASE", "re.IGNORECASE", ["IGNORECASE"], ["i"]])
def test_ignore_case_flag_spellings(flags: object) -> None:
    """Letters, Python names and lists of them all turn on ignore-case."""
    assert pairs(one("e", "error", flags).scan("ERROR")) == [("e", "ERROR")]


def test_without_flags_matching_is_case_sensitive() -> None:
    """With no flags a pattern is case-sensitive."""
    assert one("e", "error").scan("ERROR") == []


def test_dotall_flag() -> None:
    """With s, a dot matches a newline."""
    assert one("d", "a.b").scan("a\nb") == []
    assert pairs(one("d", "a.b", "s").scan("a\nb")) == [("d", "a\nb")]


def test_multiline_flag() -> None:
    """With m, ^ and $ match at line breaks."""
    assert pairs(one("m", "^b$").scan("a\nb")) == []
    assert pairs(one("m", "^b$", "m").scan("a\nb")) == [("m", "b")]


def test_combined_flags_string() -> None:
    """A string of names such as "I|S" sets both flags."""
    found = one("c", "a.b", "I|DOTALL")
    assert found.specs()[0]["flags"] == "is"
    assert pairs(found.scan("A\nB")) == [("c", "A\nB")]


def test_flags_apply_across_alternatives() -> None:
    """A flag covers every top-level alternative of the pattern, not just the first."""
    assert pairs(one("c", "foo|bar", "i").scan("BAR")) == [("c", "BAR")]


# --- invalid input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ("error", "must be a list"),
        ({"name": "a", "pattern": "b"}, "must be a list"),
        (42, "must be a list"),
        (["x"], "extractor #1: must be an object"),
        ([{"pattern": "x"}], "extractor #1: name None"),
        ([{"name": "", "pattern": "x"}], "extractor #1: name ''"),
        ([{"name": "a b", "pattern": "x"}], "letters, digits"),
        ([{"name": "n" * 65, "pattern": "x"}], "1 to 64"),
        ([{"name": 7, "pattern": "x"}], "name 7"),
        ([{"name": "a", "pattern": "x"}, {"name": "a", "pattern": "y"}],
         "extractor 'a': the name is used twice"),
        ([{"name": "a", "pattern": "x", "regex": "y"}], "extractor 'a': unknown key(s) regex"),
        ([{"name": "a", "pattern": ""}], "extractor 'a': pattern must be a non-empty string"),
        ([{"name": "a"}], "extractor 'a': pattern must be a non-empty string"),
        ([{"name": "a", "pattern": 5}], "extractor 'a': pattern must be a non-empty string"),
        ([{"name": "a", "pattern": "x" * 4097}], "extractor 'a': pattern is 4097 characters"),
        ([{"name": "a", "pattern": "x", "flags": "x"}], "extractor 'a': unknown flag 'x'"),
        ([{"name": "a", "pattern": "x", "flags": "VERBOSE"}], "unknown flag 'VERBOSE'"),
        ([{"name": "a", "pattern": "x", "flags": 2}], "extractor 'a': flags must be a string"),
        ([{"name": "a", "pattern": "x", "flags": [2]}], "extractor 'a': flags must be a string"),
        ([{"name": f"e{i}", "pattern": "x"} for i in range(101)], "too many extractors"),
    ],
)
def test_invalid_specs(specs: object, message: str) -> None:
    """Malformed specs raise InvalidExtractor with a message naming the extractor."""
    with pytest.raises(InvalidExtractor) as caught:
        compile_extractors(specs)  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("ab(c",
         "extractor 'tokens': bad pattern at position 2: missing ), unterminated subpattern"),
        ("[z-a]", "extractor 'tokens': bad pattern at position 1: bad character range z-a"),
        ("a)", "extractor 'tokens': bad pattern at position 1: unbalanced parenthesis"),
        ("x**", "extractor 'tokens': bad pattern at position 2: multiple repeat"),
        ("(?P<n>a)(?P<n>b)",
         "extractor 'tokens': bad pattern at position 12: redefinition of group name 'n'"),
    ],
)
def test_bad_regex_names_error_and_position(pattern: str, message: str) -> None:
    """A pattern that is not a regex reports the parser's error and its position."""
    with pytest.raises(InvalidExtractor) as caught:
        one("tokens", pattern)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("pattern", "position", "construct"),
    [
        (r"(a)\1", 3, r"\1"),  # backreference
        ("x(?=y)", 1, "(?="),  # lookahead
        ("(?<!x)y", 0, "(?<!"),  # lookbehind
        ("(?>ab)", 0, "(?>"),  # atomic group
        ("a++", 1, "++"),  # possessive quantifier
        (r"end\Z", 3, r"\Z"),
    ],
)
def test_constructs_re2_lacks_are_explained(pattern: str, position: int, construct: str) -> None:
    """A valid Python regex that RE2 cannot run says so, with the position of the construct."""
    with pytest.raises(InvalidExtractor) as caught:
        one("look", pattern)
    message = str(caught.value)
    assert message.startswith(f"extractor 'look': unsupported construct at position {position}")
    assert construct in message
    assert "linear-time regex engine (RE2)" in message


def test_end_of_text_hint() -> None:
    r"""Python's \Z gets a hint to write RE2's \z, which works."""
    with pytest.raises(InvalidExtractor, match=r"write \\z"):
        one("end", r"x\Z")
    assert pairs(one("end", r"x\z").scan("ax")) == [("end", "x")]


def test_pattern_too_large_for_the_engine() -> None:
    """A pattern that compiles to too big a program is refused with advice."""
    with pytest.raises(InvalidExtractor, match="too large for the regex engine"):
        one("big", r"\pL{1000}")


def test_repetition_count_limit() -> None:
    """Counts beyond RE2's limit of 1000 (nested ones multiplied) are refused with the limit."""
    with pytest.raises(InvalidExtractor, match=r"'big': repetition count too large at position 13"):
        one("big", "((a{10}){10}){11}")


def test_bad_patterns_log_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    """RE2's parse errors are raised, not also written to stderr by absl."""
    for pattern in ("(a", r"(a)\1", "(?=x)"):
        with pytest.raises(InvalidExtractor):
            one("quiet", pattern)
    assert capfd.readouterr().err == ""


def test_re2_message_when_python_lacks_the_escape() -> None:
    r"""A pattern with an escape only RE2 knows (\pL) and a real error reports RE2's error."""
    with pytest.raises(InvalidExtractor) as caught:
        one("x", r"(\pL")
    assert str(caught.value) == r"extractor 'x': bad pattern at position 0: missing ): (\pL"


def test_re2_only_syntax_is_accepted() -> None:
    r"""Syntax that RE2 has and Python's re lacks (\p{Greek}, \z) is accepted."""
    assert pairs(one("greek", r"\p{Greek}+\z").scan("abc αβγ")) == [("greek", "αβγ")]


# --- speed and safety ---------------------------------------------------------------------------


@pytest.mark.timeout(1)
def test_pathological_pattern_returns_promptly() -> None:
    """(a+)+$ on 100,000 a's and a b, exponential for a backtracking engine, is quick."""
    line = "a" * 100_000 + "b"
    assert one("evil", "(a+)+$").scan(line) == []
    assert len(one("evil", "(a+)+b").scan(line)[0].value) == 100_000


@pytest.mark.timeout(1)
def test_pathological_pattern_without_prefilter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The regex itself is linear too, when the prefilter cannot be built."""
    monkeypatch.setattr(extractors, "_build_prefilter", lambda _: None)
    extractors._build.cache_clear()
    try:
        assert one("evil2", "^(a|a?)+$").scan("a" * 100_000 + "b") == []
    finally:
        extractors._build.cache_clear()


def test_public_wrapper_path_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the wrapper's internals, scan falls back to its public API with equal results."""
    lines = [line for name in RECORDED for line in transcript_lines(name)]
    codex = profile_set("codex")
    fast = [codex.scan(line) for line in lines]
    monkeypatch.setattr(extractors, "_UNANCHORED", None)
    assert [codex.scan(line) for line in lines] == fast
    assert pairs(one("e", r"\d*").scan("a 12")) == [("e", "12")]


# --- the built-in extractors on real output -----------------------------------------------------

_NPM_WARN = (
    'Unknown user config "nodedir". This will stop working in the next major version of npm. '
    "See `npm help npmrc` for supported config options."
)
_WS_ERROR = "failed to connect to Responses WebSocket stage=Unknown"
_BWRAP = (
    "Codex could not find bubblewrap on PATH. Install bubblewrap with your OS package manager. "
    "See the sandbox prerequisites: https://developers.openai.com/codex/concepts/sandboxing"
    "#prerequisites. Codex will use the bundled bubblewrap in the meantime."
)
_FALLBACK = (
    "Falling back from WebSockets to HTTPS transport. stream disconnected before completion: "
    "failed to lookup address information: Name does not resolve"
)
_NPM_LOG = (
    "A complete log of this run can be found in: "
    "/home/dev/.npm/_logs/2026-11-21T11_40_35_508Z-debug-0.log"
)

# Every line of each recording that some extractor of the profile matches, with the full result
# of scan(); every other line must match nothing.
RECORDED: dict[str, tuple[str, dict[str, list[tuple[str, str]]]]] = {
    "codex-exec": ("codex", {
        "OpenAI Codex v0.169.0": [("codex.version", "0.169.0")],
        "model: gpt-6.1-sol": [("codex.model", "gpt-6.1-sol")],
        "session id: 01a1fde8-a88c-7a73-a786-cad8e4d2cc29": [
            ("codex.session", "01a1fde8-a88c-7a73-a786-cad8e4d2cc29")],
        f"warning: {_BWRAP}": [
            ("warning", _BWRAP),
            ("url", "https://developers.openai.com/codex/concepts/sandboxing#prerequisites"),
        ],
        **{
            f"2026-11-21T11:40:{stamp}Z ERROR codex_api::endpoint::responses_websocket: "
            f"{_WS_ERROR}": [("error", _WS_ERROR)]
            for stamp in ("45.629852", "45.656761", "45.865847", "46.290959", "47.030279",
                          "48.712101", "51.920482")
        },
        **{
            f"ERROR: Reconnecting... {n}/5": [
                ("codex.reconnect", f"{n}/5"), ("error", f"Reconnecting... {n}/5")]
            for n in (2, 3, 4, 5)
        },
        f"warning: {_FALLBACK}": [("warning", _FALLBACK)],
        "ERROR: Reconnecting... waiting for network": [
            ("codex.reconnect", "waiting for network"),
            ("error", "Reconnecting... waiting for network")],
    }),
    "npm-build": ("npm", {
        f"npm warn {_NPM_WARN}": [("npm.warn", _NPM_WARN)],
        "> demo@1.0.0 build": [("npm.script", "build")],
        "warning: something": [("warning", "something")],
    }),
    "npm-err": ("npm", {
        f"npm warn {_NPM_WARN}": [("npm.warn", _NPM_WARN)],
        'npm error Missing script: "nosuch"': [
            ("npm.error", 'Missing script: "nosuch"'), ("npm.missing_script", "nosuch")],
        "npm error To see a list of scripts, run:": [
            ("npm.error", "To see a list of scripts, run:")],
        "npm error   npm run": [("npm.error", "npm run")],
        f"npm error {_NPM_LOG}": [("npm.error", _NPM_LOG)],
    }),
    "npm-install": ("npm", {
        f"npm warn {_NPM_WARN}": [("npm.warn", _NPM_WARN)],
        "added 2 packages in 368ms": [("npm.added", "2")],
    }),
    "npm-test": ("npm", {
        f"npm warn {_NPM_WARN}": [("npm.warn", _NPM_WARN)],
        "> demo@1.0.0 test": [("npm.script", "test")],
        "4 passing, 1 failing": [("tests.passing", "4 passing, 1 failing")],
    }),
}


def test_every_recording_is_checked() -> None:
    """Each recording in the fixtures directory has its expectations below."""
    assert sorted(path.stem for path in FIXTURES.glob("*.raw")) == sorted(RECORDED)


@pytest.mark.parametrize("recording", sorted(RECORDED))
def test_builtin_extractors_on_recorded_output(recording: str) -> None:
    """Each recorded line gives exactly the expected extractions; every other line gives none."""
    profile, expected = RECORDED[recording]
    found = profile_set(profile)
    lines = transcript_lines(recording)
    assert set(expected) <= set(lines), "an expected line is not in the recording"
    for line in lines:
        assert pairs(found.scan(line)) == expected.get(line, []), line


def test_recorded_groups() -> None:
    """Groups carry the parts of a recorded line that the value leaves out."""
    codex = profile_set("codex")
    traced = codex.scan("2026-11-21T11:40:45.629852Z ERROR codex_api::endpoint::"
                        "responses_websocket: failed to connect to Responses WebSocket")
    assert traced[0].groups["target"] == "codex_api::endpoint::responses_websocket"
    reconnect = codex.scan("ERROR: Reconnecting... 2/5")[0]
    assert reconnect.groups == {"value": "2/5", "attempt": "2", "max_attempts": "5"}
    npm = profile_set("npm")
    assert npm.scan("added 2 packages in 368ms")[0].groups == {"value": "2", "duration": "368ms"}
    assert npm.scan("4 passing, 1 failing")[0].groups == {
        "value": "4 passing, 1 failing", "passed": "4", "failed": "1", "pending": None}


# Formats the recordings lack, written as the tools print them (codex-rs's human output, older
# codex and npm releases, the test runners' summaries): the full result of scan().
SYNTHETIC: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("codex", "tokens used", [("codex.tokens", "")]),  # the number follows on the next line
    ("codex", "tokens used: 1,234", [("codex.tokens", "1,234")]),
    ("codex", "[2025-08-01T12:00:00] tokens used: 2345", [("codex.tokens", "2345")]),
    ("codex", "Token usage: total=1,234 input=1,000 (+ 5,000 cached) output=234",
     [("codex.tokens", "1,234")]),
    ("codex", "codex session 01a1fde8-a88c-7a73-a786-cad8e4d2cc29",
     [("codex.session", "01a1fde8-a88c-7a73-a786-cad8e4d2cc29")]),
    ("codex", "To continue this session, run codex resume 01a1fde8-a88c-7a73-a786-cad8e4d2cc29",
     [("codex.session", "01a1fde8-a88c-7a73-a786-cad8e4d2cc29")]),
    ("codex", "[2025-08-01T12:00:00] exec bash -lc 'ls -la' in /home/dev/project",
     [("codex.exec", "bash -lc 'ls -la'")]),
    ("codex", "• Ran cargo test -p codex-core", [("codex.exec", "cargo test -p codex-core")]),
    ("codex", "$ npm test", [("codex.exec", "npm test")]),
    ("codex", "bash -lc 'npm test' in /home/dev/project succeeded in 1.2s:",
     [("codex.exec_result", "bash -lc 'npm test'")]),
    ("codex", "bash -lc 'for f in *.txt; do wc -l $f; done' in /repo exited 1 in 40ms:",
     [("codex.exec_result", "bash -lc 'for f in *.txt; do wc -l $f; done'")]),
    ("codex", "apply_patch(auto_approved=true) exited 0 in 3ms:", [("codex.patch", "0")]),
    ("codex", "M src/app.py", [("codex.file_change", "src/app.py")]),
    ("codex", "A docs/new.md", [("codex.file_change", "docs/new.md")]),
    ("codex", "R old/a.py -> new/a.py", [("codex.file_change", "old/a.py")]),
    ("codex", "• Edited src/main.rs (+3 -1)", [("codex.file_change", "src/main.rs")]),
    ("codex", "Deleted build/out.js", [("codex.file_change", "build/out.js")]),
    ("npm", "npm error code E404", [("npm.error", "code E404"), ("npm.error_code", "E404")]),
    ("npm", "npm ERR! code ELIFECYCLE",
     [("npm.error", "code ELIFECYCLE"), ("npm.error_code", "ELIFECYCLE")]),
    ("npm", 'npm ERR! Missing script: "start"',
     [("npm.error", 'Missing script: "start"'), ("npm.missing_script", "start")]),
    # npm before 10 shouted WARN, which the generic warning extractor also reads.
    ("npm", "npm WARN deprecated inflight@1.0.6: leaks memory",
     [("npm.warn", "deprecated inflight@1.0.6: leaks memory"),
      ("warning", "deprecated inflight@1.0.6: leaks memory")]),
    ("npm", "> demo@1.0.0 build /home/dev/project", [("npm.script", "build")]),
    ("npm", "added 1 package, and audited 2 packages in 1s", [("npm.added", "1")]),
    ("npm", "found 0 vulnerabilities", [("npm.vulnerabilities", "0")]),
    ("npm", "3 high severity vulnerabilities", [("npm.vulnerabilities", "3")]),
    ("shell", "Tests:       1 failed, 4 passed, 5 total",
     [("tests.jest", "1 failed, 4 passed, 5 total")]),
    ("shell", "Test Suites: 1 failed, 1 passed, 2 total",
     [("tests.jest", "1 failed, 1 passed, 2 total")]),
    ("shell", " Tests  1 failed | 4 passed (5)", [("tests.vitest", "1 failed | 4 passed (5)")]),
    ("shell", "# pass 4", [("tests.tap", "4")]),
    ("shell", "# fail 1", [("tests.tap", "1")]),
    ("shell", "ℹ tests 5", [("tests.tap", "5")]),
    ("shell", "===== 1 failed, 4 passed, 1 warning in 0.12s =====",
     [("tests.pytest", "1 failed, 4 passed, 1 warning")]),
    ("shell", "4 passed in 0.01s", [("tests.pytest", "4 passed")]),
    ("shell", "4 passed, 1 failed in 0.30s", [("tests.pytest", "4 passed, 1 failed")]),
    ("shell", "  4 passing (12ms)", [("tests.passing", "4 passing (12ms)")]),
    ("shell", "  1 failing", [("tests.failing", "1 failing")]),
    ("shell", "Ran 5 tests in 0.003s", [("tests.unittest", "5")]),
    ("shell", "error: could not compile `demo` due to 2 previous errors",
     [("error", "could not compile `demo` due to 2 previous errors")]),
    ("shell", "error[E0308]: mismatched types", [("error", "mismatched types")]),
    ("shell", "TypeError: Cannot read properties of undefined (reading 'x')",
     [("error", "Cannot read properties of undefined (reading 'x')")]),
    ("shell", "Uncaught Error: boom", [("error", "boom")]),
    ("shell", "[ERROR] build failed", [("error", "build failed")]),
    ("shell", "src/x.c:10:5: warning: unused variable 'y'", [("warning", "unused variable 'y'")]),
    ("shell", "DeprecationWarning: x is deprecated", [("warning", "x is deprecated")]),
    ("shell", "2024-01-01 12:00:00 WARN disk almost full", [("warning", "disk almost full")]),
    ("shell", "(docs at https://example.com/docs).", [("url", "https://example.com/docs")]),
    ("shell", "open http://localhost:8151/api/agents?x=1, then",
     [("url", "http://localhost:8151/api/agents?x=1")]),
    ("shell", "Total tokens: 5,000", [("tokens", "5,000")]),
    ("shell", "token usage: total=77 input=70 output=7", [("tokens", "77")]),
]


@pytest.mark.parametrize(("profile", "line", "expected"), SYNTHETIC)
def test_builtin_extractors_on_documented_formats(
    profile: str, line: str, expected: list[tuple[str, str]]
) -> None:
    """Formats the recordings lack give exactly the expected extractions."""
    assert pairs(profile_set(profile).scan(line)) == expected


def test_documented_format_groups() -> None:
    """Groups of the codex command, patch, token and file lines hold the parts beside the value."""
    codex = profile_set("codex")
    usage = codex.scan("Token usage: total=1,234 input=1,000 (+ 5,000 cached) output=234")[0]
    assert usage.groups == {"value": "1,234", "input": "1,000", "cached": "5,000", "output": "234"}
    ran = codex.scan("bash -lc 'ls' in /home/dev/project exited 2 in 5ms:")[0].groups
    assert (ran["cwd"], ran["exit_code"], ran["duration"]) == ("/home/dev/project", "2", "5ms")
    moved = codex.scan("R old/a.py -> new/a.py")[0].groups
    assert (moved["action"], moved["dest"]) == ("R", "new/a.py")
    jest = profile_set("shell").scan("Tests:       1 failed, 4 passed, 5 total")[0].groups
    assert (jest["failed"], jest["passed"], jest["total"]) == ("1", "4", "5")


@pytest.mark.parametrize(
    ("profile", "line"),
    [
        ("codex", "exec"),  # codex exec's header: the command comes on the next line
        ("codex", "A fix."),
        ("codex", "Added tests for the parser"),
        ("codex", "Edited the README to explain usage"),
        ("codex", "I used apply_patch to edit the file."),
        ("codex", "tokens used by the model vary"),
        ("codex", "The model: it works"),
        ("codex", "Reconnecting"),
        ("codex", "file update"),
        ("npm", "npm error"),
        ("npm", "npm run build"),
        ("npm", "> node test.js"),
        ("npm", "> node -e \"console.error('warning: something')\""),
        ("npm", "added value to the list"),
        ("shell", "no errors found"),
        ("shell", "error handling improved in v2"),
        ("shell", "The ERRORS were fixed"),
        ("shell", "terrors: none"),
        ("shell", "Warnings are errors now"),
        ("shell", "building 50%"),
        ("shell", "✓ test 0"),
        ("shell", "passing data between 4 passing lanes"),
        ("shell", "in 5s the server restarts"),
        ("shell", "http:// is not a URL"),
        ("shell", "we ran 4 tests"),
        ("shell", ""),
    ],
)
def test_builtin_extractors_ignore_lookalikes(profile: str, line: str) -> None:
    """Lines that resemble a format but are not it match nothing."""
    assert profile_set(profile).scan(line) == []


def test_every_builtin_extractor_is_tested_on_a_line() -> None:
    """Each built-in extractor fires on at least one line of the tables above."""
    fired = {name for _, expected in RECORDED.values() for found in expected.values()
             for name, _ in found}
    fired |= {name for _, _, found in SYNTHETIC for name, _ in found}
    codex = profile_set("codex")
    fired |= {e.name for path in sorted((FIXTURES.parent / "codex").glob("*.jsonl"))
              for line in path.read_text().splitlines() for e in codex.scan(line)}
    assert {spec["name"] for spec in GENERIC + CODEX + NPM} <= fired


def test_profiles_compose_their_extractors() -> None:
    """codex is codex's own plus generic (its token extractor replacing generic's), npm is
    npm's plus generic, shell is generic; all compile."""
    profiles = builtin_profiles({"SHELL": "/bin/zsh"})
    generic = [spec["name"] for spec in GENERIC]
    assert [s["name"] for s in profiles["codex"]["extractors"]] == (
        [s["name"] for s in CODEX] + [name for name in generic if name != "tokens"])
    assert [s["name"] for s in profiles["npm"]["extractors"]] == [s["name"] for s in NPM] + generic
    assert [s["name"] for s in profiles["shell"]["extractors"]] == generic
    assert profiles["codex"]["command"] == ["codex"]
    assert profiles["npm"]["command"] == ["npm"]
    assert profiles["shell"]["command"] == ["/bin/zsh", "-l"]
    assert builtin_profiles({})["shell"]["command"] == ["bash", "-l"]
    for profile in profiles.values():
        compile_extractors(profile["extractors"])


# --- JSON extractors ----------------------------------------------------------------------------

CODEX_JSON = FIXTURES.parent / "codex"


def json_one(**spec: Any) -> ExtractorSet:
    return compile_extractors([{"name": "j", **spec}])


@pytest.mark.parametrize(
    ("spec", "line", "expected"),
    [
        ({"json": "a"}, '{"a": "x"}', [("j", "x")]),
        ({"json": "a.b.1"}, '{"a": {"b": [1, 2.5]}}', [("j", "2.5")]),
        ({"json": "a"}, '{"a": true}', [("j", "true")]),
        ({"json": "a"}, '{"a": {"n": 1, "s": "t"}}', [("j", '{"n":1,"s":"t"}')]),
        ({"json": "a"}, '{"a": null}', []),
        ({"json": "a"}, '{"a": ""}', []),
        ({"json": "a"}, '{"b": 1}', []),
        ({"json": "a"}, '  {"a": "padded"}  ', [("j", "padded")]),
        ({"json": "a"}, 'log: {"a": "x"}', []),  # not a JSON line
        ({"json": "a"}, '{"a": "x"', []),  # broken JSON
        ({"json": "a"}, '["a"]', []),
        ({"json": "a", "where": {"t": "on"}}, '{"t": "on", "a": "x"}', [("j", "x")]),
        ({"json": "a", "where": {"t": "on"}}, '{"t": "off", "a": "x"}', []),
        ({"json": "a", "where": {"t": "on"}}, '{"a": "x"}', []),
        ({"json": "a", "where": {"t": ["on", "up"]}}, '{"t": "up", "a": "x"}', [("j", "x")]),
        ({"json": "a", "where": {"n.k": 1, "f": False}}, '{"n": {"k": 1}, "f": false, "a": "x"}', [("j", "x")]),
        ({"json": "a", "where": {"n": 1}}, '{"n": "1", "a": "x"}', []),  # types count
    ],
)
def test_json_extractor_reads_fields_of_json_lines(spec: dict[str, Any], line: str,
                                                    expected: list[tuple[str, str]]) -> None:
    """A JSON extractor reads lines that are a JSON object: the field at its path, when every
    ``where`` path has its value (or one of its list); strings as they are, the rest as JSON."""
    assert pairs(json_one(**spec).scan(line)) == expected


def test_json_groups_are_an_objects_members_or_named_paths() -> None:
    """An object's scalar members are the groups; ``groups`` names paths instead."""
    assert json_one(json="u").scan('{"u": {"in": 3, "out": 4, "deep": {"x": 1}, "s": null}}')[0].groups == {
        "in": "3", "out": "4", "s": None}
    named = json_one(json="i.cmd", groups={"code": "i.code", "gone": "i.none"})
    assert named.scan('{"i": {"cmd": "ls", "code": 0}}')[0].groups == {"code": "0", "gone": None}


def test_json_and_regex_extractors_together_keep_their_order_and_caps() -> None:
    """JSON and regex extractors run in the order given, and count towards the line's cap."""
    both = compile_extractors([
        {"name": "digits", "pattern": r"\d+"},
        {"name": "field", "json": "a"},
        {"name": "letters", "pattern": r"[a-z]{3,}"},
    ])
    assert pairs(both.scan('{"a": "word 12"}')) == [("digits", "12"), ("field", "word 12"), ("letters", "word")]
    capped = both.scan_capped('{"a": "word 12"}', per_extractor=8, per_line=1)
    assert pairs(capped.found) == [("digits", "12")] and capped.cut == 2
    assert pairs(both.scan("plain 7")) == [("digits", "7"), ("letters", "plain")]


def test_json_specs_round_trip() -> None:
    """specs() gives JSON extractors back as given."""
    specs: list[dict[str, Any]] = [
        {"name": "j", "json": "a.b", "where": {"t": "x", "k": [1, 2]}, "groups": {"g": "c"}},
        {"name": "k", "json": "z"}]
    assert compile_extractors(specs).specs() == specs
    assert compile_extractors(compile_extractors(specs).specs()).specs() == specs


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"json": ""}, "json must be a dotted path"),
        ({"json": "a..b"}, "json must be a dotted path"),
        ({"json": 3}, "json must be a dotted path"),
        ({"json": "a", "pattern": "x"}, "unknown key(s) pattern (a JSON extractor has no pattern)"),
        ({"json": "a", "where": ["t"]}, "where must be an object"),
        ({"json": "a", "where": {"t": {"x": 1}}}, "where.t must be a string, number"),
        ({"json": "a", "where": {"t": []}}, "where.t must be"),
        ({"json": "a", "where": {"": 1}}, "a where key must be a dotted path"),
        ({"json": "a", "groups": {"9x": "b"}}, "group name '9x'"),
        ({"json": "a", "groups": {"g": ""}}, "groups.g must be a dotted path"),
        ({"json": "a", "where": {f"k{i}": 1 for i in range(17)}}, "at most 16 entries"),
    ],
)
def test_invalid_json_specs(spec: dict[str, Any], message: str) -> None:
    """Malformed JSON extractor specs are refused with a message naming the extractor."""
    with pytest.raises(InvalidExtractor) as caught:
        compile_extractors([{"name": "j", **spec}])
    assert message in str(caught.value) and "'j'" in str(caught.value)


def test_codex_profile_reads_codex_exec_json() -> None:
    """The codex profile's JSON extractors on real ``codex exec --json`` captures: the thread,
    the command it ran with its exit code, the final message, the token usage; a failed turn's
    error."""
    codex = profile_set("codex")

    def found(fixture: str) -> list[tuple[str, str, dict[str, str | None]]]:
        lines = (CODEX_JSON / fixture).read_text().splitlines()
        return [(e.name, e.value, e.groups) for line in lines for e in codex.scan(line) if e.name.startswith("codex.")]

    usage = '{"input_tokens":3200,"cached_input_tokens":1700,"cache_write_input_tokens":0,"output_tokens":65,"reasoning_output_tokens":12}'
    assert found("exec-json-0.169.0.jsonl") == [
        ("codex.thread", "01a23341-460a-78e1-b120-49864d30824f", {}),
        ("codex.command", "/bin/bash -lc 'echo offline-$((6 * 7))'", {"exit_code": "0", "status": "completed"}),
        ("codex.message", "Ran it: the command printed offline-42.", {}),
        ("codex.usage", usage, {"input_tokens": "3200", "cached_input_tokens": "1700", "cache_write_input_tokens": "0",
                                "output_tokens": "65", "reasoning_output_tokens": "12"}),
    ]
    failed = found("exec-json-failed-0.169.0.jsonl")
    assert [name for name, _, _ in failed] == ["codex.thread", "codex.command", "codex.turn_failed"]
    assert "the script has 1" in failed[-1][1]
