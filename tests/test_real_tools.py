"""The real tools under the real supervisor: the codex CLI (``codex exec`` and its full screen)
and ``npm run``, with their profiles' extractors on their real output.

codex is installed, pinned, into ``.tools/`` (ignored by git) with
``npm install --prefix .tools @openai/codex@0.169.0``; the fixture does it if it is missing.
Where that cannot be done (no npm, no network) the codex tests skip with the reason, and fail
under ``CI=true``, where they must run.

No test traffic leaves the machine: codex gets a dummy key, a temporary HOME and CODEX_HOME, its
API base URL on a closed loopback port (codex 0.169 reads it from ``openai_base_url`` in
``config.toml``; ``OPENAI_BASE_URL`` is set too, for older releases) and, for everything else it
fetches at start-up (plugin lists, update checks), a proxy on that same closed port.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from support import ROOT
from support.cli import cli, stop_and_check_all_gone
from support.codex import CODEX_VERSION, offline_codex_env, unavailable
from support.processes import Server
from support.sse import SSEEvent, collect, extractions, plain

NPM_DEMO = ROOT / "tests" / "fixtures" / "npm-demo"


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_codex_exec_lines_extractions_and_stop(codex_bin: Path, server: Server, tmp_path: Path) -> None:
    """``codex exec`` under the supervisor: its header and retry lines arrive, the error and
    warning extractors fire on them, and ``stop`` ends codex and every process it started."""
    work = tmp_path / "work"
    work.mkdir()
    server.create(name="codex-exec", profile="codex", cwd=str(work),
                  args=["exec", "--skip-git-repo-check", "say hello"],
                  env=offline_codex_env(tmp_path, codex_bin))

    def done(events: list[SSEEvent]) -> bool:
        found = extractions(events)
        return "error" in found and "warning" in found and "codex.version" in found

    events = collect(server, "codex-exec", done, timeout=90)
    lines = [plain(e) for e in events if e.event == "log"]
    assert f"OpenAI Codex v{CODEX_VERSION}" in lines
    assert any("ERROR" in line for line in lines)
    found = extractions(events)
    assert found["codex.version"] == [CODEX_VERSION]
    assert any(value for value in found["error"])
    stop_and_check_all_gone(server, "codex-exec")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_codex_full_screen_draws_when_its_queries_are_answered(
        codex_bin: Path, server: Server, tmp_path: Path) -> None:
    """Plain ``codex`` asks the terminal for the cursor, device attributes and colours and draws
    nothing until answered; under the supervisor it draws its welcome screen, which settles
    into a ``screen`` event (a full-screen program's output is its screen's, not lines)."""
    work = tmp_path / "work"
    work.mkdir()
    server.create(name="codex-tui", profile="codex", cwd=str(work), cols=120, rows=40,
                  env=offline_codex_env(tmp_path, codex_bin))

    def welcome(event: SSEEvent) -> bool:
        return event.event == "screen" and any("OpenAI Codex" in row for row in event.json()["data"]["text"])

    events = collect(server, "codex-tui", lambda seen: any(welcome(e) for e in seen), timeout=90)
    assert any(welcome(e) for e in events)
    assert not any(e.event == "log" and "OpenAI Codex" in plain(e) for e in events)
    stop_and_check_all_gone(server, "codex-tui")


# --------------------------------------------------------------------------- npm


@pytest.fixture
def npm_project(tmp_path: Path) -> Path:
    """A copy of tests/fixtures/npm-demo, so npm writes nothing into the repository."""
    if shutil.which("npm") is None:
        unavailable("npm is not installed")
    return Path(shutil.copytree(NPM_DEMO, tmp_path / "npm-demo"))


def npm_run(server: Server, tmp_path: Path, project: Path, name: str,
            *args: str) -> tuple[int, list[dict[str, Any]]]:
    """``agent-supervisor run --profile npm --json -- ARGS`` in ``project``: status, events."""
    quiet = {"HOME": str(tmp_path / "npm-home"), "npm_config_update_notifier": "false",
             "npm_config_audit": "false", "npm_config_fund": "false", "NO_UPDATE_NOTIFIER": "1"}
    env_flags = [flag for key, value in quiet.items() for flag in ("--env", f"{key}={value}")]
    result = cli("run", name, "--profile", "npm", "--cwd", str(project), "--json", *env_flags,
                 "--", *args, server=server, timeout=120)
    assert "Traceback" not in result.stderr
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def values(events: list[dict[str, Any]], extractor: str) -> list[str]:
    return [e["data"]["value"] for e in events
            if e["type"] == "extraction" and e["data"]["name"] == extractor]


def npm_lines(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"].get("plain", e["data"]["line"]) for e in events
            if e["type"] == "log" and not e["data"].get("partial")]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_npm_script_that_fails(server: Server, tmp_path: Path, npm_project: Path) -> None:
    """A failing ``npm run fail``: the run exits with the script's status, the npm profile names
    the script, and the script's error line (and any ``npm error`` line) is extracted."""
    status, events = npm_run(server, tmp_path, npm_project, "npm-fail", "run", "fail")
    assert status == 2
    lines = npm_lines(events)
    assert "> npm-demo@1.0.0 fail" in lines
    assert values(events, "npm.script") == ["fail"]
    assert "cannot find module './missing-file'" in values(events, "error")
    npm_errors = [line for line in lines if line.startswith("npm error ")]
    # npm 10 follows a failed script with "npm error ..." lines; npm 11 prints none.
    assert len(values(events, "npm.error")) == len(npm_errors)


@pytest.mark.timeout(180)
def test_npm_missing_script(server: Server, tmp_path: Path, npm_project: Path) -> None:
    """``npm run nope``: the real ``npm error Missing script`` lines fire the npm extractors."""
    status, events = npm_run(server, tmp_path, npm_project, "npm-missing", "run", "nope")
    assert status == 1
    assert values(events, "npm.missing_script") == ["nope"]
    errors = values(events, "npm.error")
    assert 'Missing script: "nope"' in errors
    assert any("complete log of this run" in value for value in errors)


@pytest.mark.timeout(180)
def test_npm_error_code(server: Server, tmp_path: Path, npm_project: Path) -> None:
    """A failed local install prints ``npm error code ENOENT``, which the profile extracts."""
    status, events = npm_run(server, tmp_path, npm_project, "npm-enoent", "install", "./no-such-dir")
    assert status != 0
    assert values(events, "npm.error_code") == ["ENOENT"]
    assert len(values(events, "npm.error")) >= 3


@pytest.mark.timeout(180)
def test_npm_script_that_succeeds(server: Server, tmp_path: Path, npm_project: Path) -> None:
    """``npm run build`` exits 0 with its output, each line once, no npm error extracted."""
    status, events = npm_run(server, tmp_path, npm_project, "npm-build", "run", "build")
    assert status == 0
    lines = npm_lines(events)
    assert [line for line in lines if line.endswith(": ok")] == ["compile: ok", "bundle: ok", "minify: ok"]
    assert values(events, "npm.error") == []
    assert events[-1]["type"] == "complete" and events[-1]["data"]["exit_code"] == 0
