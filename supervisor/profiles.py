"""Built-in profiles and the extractors they turn on, written against recorded output.

Each pattern matches the ANSI-free text of one line and is tested on PTY recordings of npm 10
and ``codex exec`` 0.169 (kept in ``tests/test_extractors.py``); formats that the recordings
lack follow the tool's printing code (codex-rs ``exec/src/event_processor_with_human_output.rs``)
or its older releases. Values are the text as printed: ``tokens used`` gives ``"73,347"``,
commas included.

Stdlib only, and no import of :mod:`supervisor.config`, which builds its ``Profile`` objects
from :func:`builtin_profiles`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict


class ProfileSpec(TypedDict):
    command: list[str]
    extractors: list[dict[str, Any]]
    env: dict[str, str]
    description: str


def _x(name: str, pattern: str, flags: str = "") -> dict[str, Any]:
    return {"name": name, "pattern": pattern, "flags": flags}


def _j(name: str, path: str, where: dict[str, Any], groups: dict[str, str] | None = None) -> dict[str, Any]:
    """A JSON extractor (see :mod:`supervisor.extractors`)."""
    spec: dict[str, Any] = {"name": name, "json": path, "where": where}
    if groups:
        spec["groups"] = groups
    return spec


# An old-style codex timestamp, "[2025-08-01T12:00:00] ", which some versions put on each line.
_TS = r"^\s*(?:\[[^\]]*\]\s*)?"
_PATH = r"(?:/|~|[A-Za-z]:\\)\S*"

#: For agents with no profile: errors, warnings, URLs, token counts, test summaries.
GENERIC: tuple[dict[str, Any], ...] = (
    # "error: x", "TypeError: x", "error[E0308]: x", "ERROR x" (a log level); a Rust tracing
    # target ("ERROR codex_api::endpoint: failed ...") goes to its own group.
    _x("error",
       r"(?:^|[\s\[])(?:(?:[A-Z]\w*Error|Error|error|ERROR|FATAL|fatal|[A-Z]\w*Exception)"
       r"(?:\[[\w-]+\])?:|\[?ERROR\]?)\s+(?:(?P<target>\w+(?:::\w+)+):\s+)?"
       r"(?P<value>\S.*?)\s*$"),
    _x("warning",
       r"(?:^|[\s\[])(?:(?:warning|Warning|WARNING|[A-Z]\w*Warning)(?:\[[\w-]+\])?:|"
       r"\[?WARN(?:ING)?\]?)\s+(?:(?P<target>\w+(?:::\w+)+):\s+)?(?P<value>\S.*?)\s*$"),
    # Trailing punctuation is sentence, not URL: "see https://x.org/a." gives "https://x.org/a".
    _x("url", r"\bhttps?://[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]"),
    _x("tokens",
       r"\b(?:tokens used|token usage|total[_ ]tokens)\b\s*[:=]?\s*(?:total\s*=\s*)?"
       r"(?P<value>\d[\d,]*)", "i"),
    # mocha and friends: "4 passing (12ms)", "4 passing, 1 failing".
    _x("tests.passing",
       r"(?:^|\s)(?P<value>(?P<passed>\d+) passing(?:\s*\([^)]*\))?"
       r"(?:,?\s*(?P<failed>\d+) failing)?(?:,?\s*(?P<pending>\d+) pending)?)\s*$"),
    # mocha prints its failure count on a line of its own.
    _x("tests.failing", r"^\s*(?P<value>(?P<failed>\d+) failing)\s*$"),
    # jest: "Tests:       1 failed, 4 passed, 5 total".
    _x("tests.jest",
       r"^\s*(?P<kind>Tests|Test Suites):\s+(?P<value>(?:(?P<failed>\d+) failed, )?"
       r"(?:(?P<skipped>\d+) skipped, )?(?:(?P<todo>\d+) todo, )?(?:(?P<passed>\d+) passed, )?"
       r"(?P<total>\d+) total)"),
    # vitest: " Tests  1 failed | 4 passed (5)".
    _x("tests.vitest",
       r"^\s*(?P<kind>Tests|Test Files)\s{2,}(?P<value>(?:\d+ \w+(?: \| )?)+(?:\s*\(\d+\))?)\s*$"),
    # node:test and TAP: "# pass 4", "# fail 1"; node's spec reporter: "ℹ pass 4".
    _x("tests.tap",
       r"^\s*[#ℹ]\s*(?P<kind>tests|suites|pass|fail|cancelled|skipped|todo)\s+"
       r"(?P<value>\d+)\s*$"),
    # pytest: "==== 1 failed, 4 passed, 1 warning in 0.12s ====", "4 passed in 0.01s".
    _x("tests.pytest",
       r"^=*\s*(?P<value>(?:(?P<failed>\d+) failed)?(?:(?:, )?(?P<passed>\d+) passed)?"
       r"(?:(?:, )?\d+ (?:failed|passed|skipped|deselected|xfailed|xpassed|warnings?|errors?|"
       r"rerun))*) in (?P<duration>\d+(?:\.\d+)?s)(?: \([\d:]+\))?\s*=*\s*$"),
    # unittest: "Ran 5 tests in 0.003s".
    _x("tests.unittest", r"^Ran (?P<value>\d+) tests? in (?P<duration>\d+(?:\.\d+)?s)\s*$"),
)

#: codex (``codex exec``, ``codex exec --json`` and the TUI). Its ERROR/warning lines are the
#: generic ``error`` and ``warning`` extractors' (they read codex's tracing format), so a
#: profile does not report them twice.
#:
#: ``codex exec --json`` prints one JSON event per line; the JSON extractors read these shapes
#: of codex 0.169.0 (``tests/fixtures/codex/exec-json-0.169.0.jsonl``, a real capture)::
#:
#:     {"type":"thread.started","thread_id":"01a23341-460a-78e1-b120-49864d30824f"}
#:     {"type":"item.completed","item":{"id":"item_0","type":"command_execution",
#:         "command":"/bin/bash -lc 'echo offline-$((6 * 7))'","aggregated_output":"offline-42\n",
#:         "exit_code":0,"status":"completed"}}
#:     {"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"Ran it: ..."}}
#:     {"type":"turn.completed","usage":{"input_tokens":3200,"cached_input_tokens":1700,
#:         "cache_write_input_tokens":0,"output_tokens":65,"reasoning_output_tokens":12}}
#:     {"type":"turn.failed","error":{"message":"..."}}
#:
#: ``codex.thread`` is the thread (session) id, ``codex.command`` each command run (value the
#: command as codex ran it, groups ``exit_code`` and ``status``), ``codex.message`` each
#: message of the agent (its last is the final answer), ``codex.usage`` the turn's token usage
#: summed over its model responses (value the usage object as JSON, groups each count),
#: ``codex.turn_failed`` the error of a failed turn.
CODEX: tuple[dict[str, Any], ...] = (
    _j("codex.thread", "thread_id", {"type": "thread.started"}),
    _j("codex.command", "item.command", {"type": "item.completed", "item.type": "command_execution"},
       {"exit_code": "item.exit_code", "status": "item.status"}),
    _j("codex.message", "item.text", {"type": "item.completed", "item.type": "agent_message"}),
    _j("codex.usage", "usage", {"type": "turn.completed"}),
    _j("codex.turn_failed", "error.message", {"type": "turn.failed"}),
    _x("codex.version", r"^OpenAI Codex v(?P<value>\d+(?:\.\d+)+\S*)"),
    _x("codex.model", _TS + r"model:\s+(?P<value>\S+)"),
    _x("codex.session",
       r"\b(?:session id|codex session|codex resume|session_id)[:=]?\s+"
       r"(?P<value>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b", "i"),
    # "tokens used: 1,234"; "Token usage: total=1,234 input=1,000 (+ 500 cached) output=234".
    # Recent codex prints "tokens used" and the number on the next line: the bare header
    # matches with value "" (one line is all an extractor sees).
    _x("codex.tokens",
       _TS + r"(?i:tokens used|token usage)(?::?\s*(?:total\s*=\s*)?(?P<value>\d[\d,]*)"
       r"(?:\s+input\s*=\s*(?P<input>\d[\d,]*))?(?:\s*\(\+\s*(?P<cached>\d[\d,]*)\s+cached\))?"
       r"(?:\s+output\s*=\s*(?P<output>\d[\d,]*))?|:?\s*$)"),
    _x("codex.reconnect",
       r"\bReconnecting\.\.\.\s*(?P<value>(?P<attempt>\d+)/(?P<max_attempts>\d+)|\S.*?)\s*$"),
    # A command starting: "exec bash -lc ls in /repo" (older exec), "• Ran ls" (TUI), "$ ls".
    _x("codex.exec",
       _TS + r"(?:exec|[•✓✗⚡]\s*Ran|\$)\s+(?P<value>\S.*?)"
       r"(?:\s+in\s+(?P<cwd>" + _PATH + r"))?\s*$"),
    # A command finished (codex exec prints "exec", then this line when the command ends):
    # "bash -lc 'npm test' in /repo succeeded in 1.2s:", "... exited 1 in 40ms:".
    _x("codex.exec_result",
       _TS + r"(?P<value>\S.*?) in (?P<cwd>" + _PATH + r") (?P<status>succeeded|exited "
       r"(?P<exit_code>-?\d+)) in (?P<duration>\d[\w.]*):\s*$"),
    # "apply_patch(auto_approved=true) exited 0 in 3ms:"; the value is the exit code.
    _x("codex.patch",
       _TS + r"apply_patch(?:\((?P<args>[^)]*)\))? exited (?P<value>-?\d+)"
       r"(?: in (?P<duration>\d[\w.]*))?:?\s*$"),
    # One changed file: "M src/app.py", "A docs/x.md", "R a.py -> b.py" (codex exec, git
    # status), "• Edited src/app.py (+3 -1)" (TUI). The path must look like one, so prose
    # ("A fix.", "Added tests") does not match.
    _x("codex.file_change",
       r"^\s*(?:•\s*)?(?P<action>Edited|Added|Deleted|Created|Updated|Renamed|Moved|[MADR])\s+"
       r"(?P<value>\S*[/.][\w-]\S*)(?:\s+(?:->|→)\s+(?P<dest>\S+))?(?:\s+\(\+\d+\s+-\d+\))?\s*$"),
)

#: npm 7 to 10 (``npm error``/``npm warn``; ``npm ERR!``/``npm WARN`` before npm 10).
NPM: tuple[dict[str, Any], ...] = (
    _x("npm.error", r"^npm (?:error|ERR!)\s+(?P<value>\S.*?)\s*$"),
    _x("npm.error_code", r"^npm (?:error|ERR!) code (?P<value>E[A-Z0-9_]+|\d+)\s*$"),
    _x("npm.missing_script", r"\bMissing script: \"(?P<value>[^\"]+)\""),
    _x("npm.warn", r"^npm (?:warn|WARN)\s+(?P<value>\S.*?)\s*$"),
    # "> demo@1.0.0 build" heads every script npm runs; the value is the script name.
    _x("npm.script", r"^> (?P<package>\S+@\S+) (?P<value>[^\s/]+)(?: (?P<path>/.*?))?\s*$"),
    _x("npm.added",
       r"^added (?P<value>\d+) packages?\b.*? in (?P<duration>\d+(?:\.\d+)?(?:ms|s|m))\s*$"),
    _x("npm.vulnerabilities",
       r"^(?:found )?(?P<value>\d+) (?:\w+ severity )?vulnerabilit(?:y|ies)\b"),
)


def _compose(
    specific: tuple[dict[str, Any], ...], shadowed: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """A tool's own extractors, then the generic ones it does not replace."""
    return [dict(spec) for spec in specific] + [
        dict(spec) for spec in GENERIC if spec["name"] not in shadowed
    ]


def builtin_profiles(environ: Mapping[str, str]) -> dict[str, ProfileSpec]:
    """The built-in profiles; ``shell`` runs ``$SHELL`` (from ``environ``) as a login shell."""
    return {
        "codex": {
            "command": ["codex"],
            "extractors": _compose(CODEX, frozenset({"tokens"})),
            "env": {},
            "description": "OpenAI codex CLI: tokens, commands run, messages, file changes, errors "
                           "(exec --json too).",
        },
        "npm": {
            "command": ["npm"],
            "extractors": _compose(NPM),
            "env": {},
            "description": "npm: errors and codes, warnings, installs, test summaries.",
        },
        "shell": {
            "command": [environ.get("SHELL") or "bash", "-l"],
            "extractors": _compose(()),
            "env": {},
            "description": "A login shell with the generic extractors.",
        },
    }
