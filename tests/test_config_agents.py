"""Tests for supervisor.config_agents: ``[agents.NAME]`` tables checked into definitions, and
errors that name the file, the agent and the key."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from supervisor.config import load_config
from supervisor.config_agents import TABLE_KEYS, build
from supervisor.exceptions import ConfigError
from supervisor.spec import AGENT_FIELDS


def agents_of(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return dict(build(load_config(path, environ={"HOME": str(tmp_path)})))


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        agents_of(tmp_path, text)
    return str(caught.value)


def test_a_table_is_the_api_definition_plus_autostart(tmp_path: Path) -> None:
    """The table's name is the agent's; the API's fields (profile, args, extractors, restart...)
    mean what they mean there; autostart defaults to true."""
    found = agents_of(tmp_path, f"""
[agents.build]
command = ["{sys.executable}", "-c", "print(1)"]
env = {{ CI = "1" }}
restart = {{ mode = "on-failure", max_restarts = 2 }}
extractors = [{{ name = "pct", pattern = '(?P<value>\\d+)%' }}]
cols = 100

[agents.helper]
profile = "shell"
args = ["-c", "true"]
autostart = false
""")
    build_agent, helper = found["build"], found["helper"]
    assert build_agent.autostart is True and helper.autostart is False  # type: ignore[attr-defined]
    spec = build_agent.spec  # type: ignore[attr-defined]
    assert (spec.name, spec.command[1:], spec.env["CI"], spec.cols) == ("build", ["-c", "print(1)"], "1", 100)
    assert (spec.restart.mode, spec.restart.max_restarts) == ("on-failure", 2)
    assert "pct" in [e["name"] for e in spec.extractors]
    assert helper.spec.profile == "shell" and helper.spec.args == ["-c", "true"]  # type: ignore[attr-defined]
    assert TABLE_KEYS == (AGENT_FIELDS - {"name"}) | {"autostart"}


def test_an_unknown_key_names_the_file_the_agent_and_the_key(tmp_path: Path) -> None:
    """A typo is refused, with the file, [agents.NAME], the key and what is known."""
    message = error_of(tmp_path, '[agents.web]\ncomand = ["x"]\n')
    path = str(tmp_path / "config.toml")
    assert path in message and "[agents.web]" in message and "'comand'" in message
    assert "known:" in message and "command" in message


def test_a_bad_regex_names_the_file_the_agent_and_the_key(tmp_path: Path) -> None:
    """A pattern that does not compile is the extractors key's fault, with the compiler's reason."""
    message = error_of(tmp_path, '[agents.web]\ncommand = ["true"]\nextractors = [{ name = "x", pattern = "(" }]\n')
    assert str(tmp_path / "config.toml") in message
    assert "[agents.web] extractors:" in message and "'x'" in message and "missing )" in message


@pytest.mark.parametrize(("table", "key", "why"), [
    ('autostart = "yes"\ncommand = ["true"]', "autostart", "true or false"),
    ('cols = 3\ncommand = ["true"]', "cols", "from 10"),
    ('command = ["no-such-program-xyz"]', "command", "no-such-program-xyz"),
    ('profile = "nope"', "profile", "unknown profile"),
    ('command = ["true"]\ncwd = "/no/such/dir"', "cwd", "/no/such/dir"),
    ('command = ["true"]\nrestart = { mode = "sometimes" }', "restart", "sometimes"),
    ('args = ["x"]', "command", "give either command"),
])
def test_each_bad_value_names_its_key(tmp_path: Path, table: str, key: str, why: str) -> None:
    """Every kind of bad value says which key it is about, and why."""
    message = error_of(tmp_path, f"[agents.a1]\n{table}\n")
    assert f"[agents.a1] {key}:" in message and why in message, message


def test_names_and_shapes_are_checked_when_the_file_is_read(tmp_path: Path) -> None:
    """A table name that is no agent name, or agents that are not tables, fail load_config."""
    path = tmp_path / "config.toml"
    path.write_text('[agents."bad name"]\ncommand = ["true"]\n')
    with pytest.raises(ConfigError, match="agents.bad name"):
        load_config(path, environ={})
    path.write_text('agents = 3\n')
    with pytest.raises(ConfigError, match="table of"):
        load_config(path, environ={})


def test_public_dict_masks_agent_env_values(tmp_path: Path) -> None:
    """Shown settings say which variables an agent sets, never their values (API keys)."""
    path = tmp_path / "config.toml"
    path.write_text('[agents.k]\ncommand = ["true"]\nenv = { OPENAI_API_KEY = "sk-secret" }\n')
    shown = load_config(path, environ={}).public_dict()
    assert shown["agents"]["k"]["env"] == {"OPENAI_API_KEY": "***"}
    assert "sk-secret" not in repr(shown) and shown["config_file"] == str(path.resolve())
