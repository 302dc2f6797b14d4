"""Tests for supervisor.cli.completion: the scripts, run by bash and zsh themselves."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT
from support.browser import in_ci
from support.cli import cli_env
from support.processes import Server


def script(shell: str) -> str:
    result = subprocess.run([sys.executable, "-m", "supervisor", "completion", shell], cwd=ROOT, check=True,
                            capture_output=True, text=True, timeout=60)
    return result.stdout


def bash_complete(tmp_path: Path, words: list[str], env: dict[str, str] | None = None) -> list[str]:
    """What bash offers for ``words`` (the last one being completed), with the script sourced."""
    path = tmp_path / "completion.bash"
    path.write_text(script("bash"))
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    code = (f"source {path}\nCOMP_WORDS=({quoted}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n"
            "_agent_supervisor; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    result = subprocess.run(["bash", "--norc", "-c", code], capture_output=True, text=True, timeout=30, env=env,
                            check=True)
    return [line for line in result.stdout.splitlines() if line]


@pytest.mark.slow
def test_bash_completes_commands_options_and_choices(tmp_path: Path) -> None:
    """Commands by prefix, each command's own options, and option values that have choices."""
    assert bash_complete(tmp_path, ["agent-supervisor", "st"]) == ["start", "stats", "stop"]
    assert bash_complete(tmp_path, ["agent-supervisor", "--url", "http://x", "rel"]) == ["reload"]
    assert bash_complete(tmp_path, ["agent-supervisor", "run", "x", "--restart", ""]) == ["never", "on-failure", "always"]
    assert "--grace" in bash_complete(tmp_path, ["agent-supervisor", "stop", "--"])
    assert bash_complete(tmp_path, ["agent-supervisor", "completion", ""]) == ["bash", "zsh"]
    assert bash_complete(tmp_path, ["agent-supervisor", "tail", "x", "--col"]) == ["--color", "--colour"]


@pytest.mark.slow
def test_bash_completes_agent_names_from_the_server(tmp_path: Path, server: Server) -> None:
    """A NAME is completed with the agents the running server has."""
    for name in ("alpha-1", "alpha-2", "beta"):
        server.create(name=name, command=["true"])
    env = cli_env(server)
    env["PATH"] = str(Path(sys.executable).parent) + ":" + env.get("PATH", "")
    assert bash_complete(tmp_path, ["agent-supervisor", "stop", "alp"], env) == ["alpha-1", "alpha-2"]
    assert bash_complete(tmp_path, ["agent-supervisor", "tail", "--json", "b"], env) == ["beta"]
    # After the command's own positionals nothing more is a name; after -- come commands.
    assert "echo" in bash_complete(tmp_path, ["agent-supervisor", "run", "x", "--", "ech"], env)


def test_zsh_runs_the_script(tmp_path: Path) -> None:
    """zsh parses the script, and its completer offers the same words (compadd stubbed to print)."""
    if shutil.which("zsh") is None:
        message = "zsh is missing (apt-get install zsh; the test command installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    path = tmp_path / "completion.zsh"
    path.write_text(script("zsh"))
    code = (f"compdef() {{ : }}; compadd() {{ [[ $1 == -- ]] && shift; print -rl -- $@ }}\n"
            f"_files() {{ print FILES }}; source {path}\n"
            "words=(agent-supervisor run x --restart ''); CURRENT=5; _agent_supervisor\n"
            "print -- ---; words=(agent-supervisor serve --config ''); CURRENT=4; _agent_supervisor\n")
    result = subprocess.run(["zsh", "-f", "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.split("---\n") == ["never\non-failure\nalways\n", "FILES\n"]
