"""Tests for supervisor.reload (and the start of a server): the config file's agents applied the
way ``supervisorctl update`` does, and the API agents a restart of the server resumes.

In-process with real processes for the rules; real servers for SIGHUP, ``agent-supervisor
reload``, ``POST /api/reload`` and what comes back after SIGTERM or SIGKILL of the server.
"""
from __future__ import annotations

import errno
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import Config, load_config
from supervisor.config_agents import build
from supervisor.exceptions import AgentFromConfig, ConfigError
from supervisor.registry import Registry
from supervisor.reload import Reloader

from support.agents import lines
from support.cli import cli
from support.faults import Faults, kind
from support.processes import Server
from support.waiting import gwait, wait_for

SLEEPER = "sh", "-c", "echo {word}; exec sleep 60"


def sleeper(word: str) -> str:
    """A TOML command list: prints ``word``, then sleeps."""
    return f'["sh", "-c", "echo {word}; exec sleep 60"]'


class Setup:
    """A config file, a registry booted from it, and its reloader."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "config.toml"
        self.home = tmp_path

    def load(self) -> Config:
        return load_config(self.path, environ={"HOME": str(self.home)}, data_dir=str(self.home / "data"),
                           stop_grace_s=2.0)

    def write(self, text: str) -> None:
        self.path.write_text(text, encoding="utf-8")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Setup, Callable[[str], tuple[Registry, Reloader]]]]:
    made: list[Registry] = []
    files = Setup(tmp_path)

    def boot(text: str) -> tuple[Registry, Reloader]:
        files.write(text)
        config = files.load()
        registry = Registry(config)
        made.append(registry)
        registry.boot(build(config))
        return registry, Reloader(registry, files.load)

    yield files, boot
    for registry in made:
        registry.shutdown(grace=1.0)


def running(registry: Registry, name: str) -> bool:
    return name in registry and registry.get(name).state == "running"


def test_boot_starts_the_autostart_agents_of_the_file(setup: Any) -> None:
    """``serve``: every [agents.NAME] is defined; those with autostart (the default) start."""
    _, boot = setup
    registry, _ = boot(f"[agents.web]\ncommand = {sleeper('web')}\n\n"
                       f"[agents.manual]\ncommand = {sleeper('manual')}\nautostart = false\n")
    gwait(lambda: lines(registry, "web") == ["web"], 10)
    manual = registry.get("manual")
    assert manual.state is None and manual.run == 0
    assert (registry.get("web").origin, manual.origin, manual.autostart) == ("config", "config", False)


def test_reload_adds_removes_restarts_and_leaves_the_rest_alone(setup: Any) -> None:
    """New starts, removed stops (and goes), changed restarts with its new definition; unchanged
    and API agents keep their runs."""
    files, boot = setup
    registry, reloader = boot(f"[agents.keep]\ncommand = {sleeper('keep')}\n"
                              f"[agents.change]\ncommand = {sleeper('v1')}\n"
                              f"[agents.gone]\ncommand = {sleeper('gone')}\n")
    registry.create({"name": "mine", "command": list(SLEEPER[:2]) + ["echo mine; exec sleep 60"]})
    gwait(lambda: all(running(registry, n) for n in ("keep", "change", "gone", "mine")), 10)
    pids = {name: registry.get(name).pid for name in ("keep", "mine")}
    files.write(f"[agents.keep]\ncommand = {sleeper('keep')}\n"
                f"[agents.change]\ncommand = {sleeper('v2')}\n"
                f"[agents.new]\ncommand = {sleeper('new')}\n")
    result = reloader.reload()
    assert (result.added, result.changed, result.removed, result.unchanged) == (["new"], ["change"], ["gone"], ["keep"])
    assert "gone" not in registry
    gwait(lambda: lines(registry, "change")[-1:] == ["v2"] and running(registry, "new"), 10)
    assert registry.get("change").run == 2
    assert {name: registry.get(name).pid for name in pids} == pids, "unchanged and API agents keep their runs"
    assert registry.get("mine").origin == "api"


def test_a_broken_file_changes_nothing_and_says_why(setup: Any) -> None:
    """Bad TOML or a bad regex: the reload raises with the reason, every agent keeps its run."""
    files, boot = setup
    registry, reloader = boot(f"[agents.keep]\ncommand = {sleeper('keep')}\n")
    gwait(lambda: running(registry, "keep"), 10)
    pid, config = registry.get("keep").pid, registry.config
    files.write(f'[agents.keep]\ncommand = {sleeper("other")}\n[agents.more]\ncommand = ["true"]\n'
                'extractors = [{ name = "n", pattern = "[" }]\n')
    with pytest.raises(ConfigError, match=r"\[agents.more\] extractors"):
        reloader.reload()
    files.write("[agents.keep\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        reloader.reload()
    assert sorted(a.name for a in registry.list()) == ["keep"]
    assert registry.get("keep").pid == pid and registry.get("keep").run == 1 and registry.config is config


def test_a_name_of_a_running_api_agent_is_refused_whole(setup: Any) -> None:
    """The file may not take over an API agent that runs: nothing of the reload is applied."""
    files, boot = setup
    registry, reloader = boot("")
    registry.create({"name": "clash", "command": ["sleep", "60"]})
    files.write(f"[agents.clash]\ncommand = {sleeper('c')}\n[agents.other]\ncommand = {sleeper('o')}\n")
    with pytest.raises(ConfigError, match="'clash'.*created over the API"):
        reloader.reload()
    assert "other" not in registry and registry.get("clash").origin == "api"
    registry.stop("clash", wait=True)
    gwait(lambda: not registry.get("clash").active, 10)
    assert reloader.reload().added == ["clash", "other"]  # an ended API agent is taken over
    assert registry.get("clash").origin == "config"


def test_the_api_does_not_redefine_or_delete_a_config_agent(setup: Any) -> None:
    """POST /api/agents and DELETE on a config agent's name are refused: the file is its source."""
    _, boot = setup
    registry, _ = boot('[agents.fixed]\ncommand = ["true"]\nautostart = false\n')
    with pytest.raises(AgentFromConfig, match="config file"):
        registry.create({"name": "fixed", "command": ["echo", "hi"]})
    with pytest.raises(AgentFromConfig, match="reload"):
        registry.remove("fixed")


def test_api_agents_that_asked_to_keep_running_are_resumed(tmp_path: Path) -> None:
    """A server stopped with agents running: the next one starts again those with restart
    always or on-failure (PM2's resurrect); a restart-never one stays as it was left."""
    config = load_config(environ={"HOME": str(tmp_path)}, data_dir=str(tmp_path / "data"), stop_grace_s=2.0)
    first = Registry(config)
    for name, mode in (("always", "always"), ("onfail", "on-failure"), ("once", "never")):
        first.create({"name": name, "command": ["sh", "-c", "echo up; exec sleep 60"], "restart": mode})
    gwait(lambda: all(running(first, n) for n in ("always", "onfail", "once")), 10)
    first.shutdown(grace=1.0)
    second = Registry(config)
    try:
        second.boot({})
        gwait(lambda: running(second, "always") and running(second, "onfail"), 10)
        assert second.get("always").run == 2 and "resumed" in second.get("always").reason
        assert second.get("once").state == "exited" and second.get("once").run == 1
    finally:
        second.shutdown(grace=1.0)


# ------------------------------------------------------------------------------- real servers


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def states(server: Server) -> dict[str, tuple[str, str, int]]:
    return {a["name"]: (a["state"], a["origin"], a["run"]) for a in server.get("/api/agents")["agents"]}


def test_cli_reload_and_sighup_apply_the_file(make_server: Callable[..., Server], tmp_path: Path) -> None:
    """`agent-supervisor reload` prints what changed (exit 0), says why for a broken file (exit
    1, nothing changed); SIGHUP does the same reload."""
    path = write_config(tmp_path / "agents.toml", f"[agents.alpha]\ncommand = {sleeper('a1')}\n")
    server = make_server("--config", str(path))
    server.wait_state("alpha", "running")
    assert server.get("/api/agents/alpha")["origin"] == "config"
    write_config(path, f"[agents.alpha]\ncommand = {sleeper('a2')}\n[agents.beta]\ncommand = {sleeper('b')}\n")
    done = cli("reload", server=server)
    assert done.returncode == 0, done.stderr
    assert "beta: added" in done.stdout and "alpha: changed" in done.stdout
    assert states(server) == {"alpha": ("running", "config", 2), "beta": ("running", "config", 1)}
    write_config(path, '[agents.beta]\ncommand = ["true"]\nextractors = [{ name = "n", pattern = "(" }]\n')
    broken = cli("reload", server=server)
    assert broken.returncode == 1
    assert str(path) in broken.stderr and "[agents.beta] extractors" in broken.stderr
    assert "nothing was changed" in broken.stderr
    assert states(server) == {"alpha": ("running", "config", 2), "beta": ("running", "config", 1)}
    write_config(path, f"[agents.alpha]\ncommand = {sleeper('a2')}\n")
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "beta" not in states(server), 15, 0.05, "SIGHUP to remove beta")
    assert states(server) == {"alpha": ("running", "config", 2)}


def test_reload_needs_the_token_and_answers_json(make_server: Callable[..., Server], tmp_path: Path) -> None:
    """POST /api/reload is behind the token; its answer lists the changes and the settings that
    need a restart; a bad file is 400 invalid_config."""
    path = write_config(tmp_path / "agents.toml", "")
    server = make_server("--config", str(path))
    assert server.request("POST", "/api/reload", headers={"Authorization": None}).status == 401
    write_config(path, f"queue_size = 7\n[agents.gamma]\ncommand = {sleeper('g')}\nautostart = false\n")
    answer = server.request("POST", "/api/reload")
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["added"] == ["gamma"] and body["restart_needed"] == ["queue_size"]
    assert body["config_file"] == str(path.resolve())
    assert server.get("/api/agents/gamma")["state"] is None
    write_config(path, "[agents.gamma]\nnope = 1\n")
    bad = server.request("POST", "/api/reload")
    assert bad.status == 400 and bad.json()["error"]["code"] == "invalid_config"
    assert "'nope'" in bad.json()["error"]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_an_always_agent_comes_back_after_a_server_restart(make_server: Callable[..., Server], tmp_path: Path,
                                                          how: str) -> None:
    """restart "always" survives the server, stopped cleanly or killed; restart "never" does not
    run twice; a config agent starts again by its autostart."""
    path = write_config(tmp_path / "agents.toml", f"[agents.cfg]\ncommand = {sleeper('cfg')}\n")
    data = tmp_path / "kept"
    first = make_server("--config", str(path), data_dir=data)
    for name, mode in (("keeper", "always"), ("oneshot", "never")):
        first.create(name=name, command=[sys.executable, "-c", "import time; print('up'); time.sleep(60)"], restart=mode)
        first.wait_state(name, "running")
    first.wait_state("cfg", "running")
    first.stop(getattr(signal, how))
    second = make_server("--config", str(path), data_dir=data)
    keeper = second.wait_state("keeper", "running")
    assert keeper["run"] == 2 and "resumed" in keeper["reason"]
    assert second.wait_state("cfg", "running")["run"] == 2
    oneshot = second.get("/api/agents/oneshot")
    assert oneshot["state"] == ("exited" if how == "SIGTERM" else "lost") and oneshot["run"] == 1


def test_a_config_agent_that_cannot_be_kept_is_refused_like_an_api_one(
        setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its record cannot be written (a full disk, then EROFS): at boot the server starts anyway
    and the agent is refused with nothing half made, as POST /api/agents would refuse it; a
    reload goes on with the other agents and says which were refused (storage_full or
    storage_failed); with space back, the next reload defines and starts it."""
    files, boot = setup
    faults = Faults(errno.ENOSPC).install(monkeypatch)
    faults.failing = lambda call: kind(call) == "record" and "/big/" in call.path
    registry, reloader = boot(f"[agents.big]\ncommand = {sleeper('big')}\n\n"
                              f"[agents.small]\ncommand = {sleeper('small')}\n")
    gwait(lambda: running(registry, "small"), 10)
    assert "big" not in registry and not (files.home / "data" / "agents" / "big").exists()
    faults.error = errno.EROFS
    files.write(f"[agents.big]\ncommand = {sleeper('big')}\n\n[agents.small]\ncommand = {sleeper('small')}\n\n"
                f"[agents.other]\ncommand = {sleeper('other')}\n")
    result = reloader.reload()
    assert result.added == ["other"] and list(result.failed) == ["big"]
    assert result.failed["big"]["code"] == "storage_failed" and "agent.json" in result.failed["big"]["message"]
    gwait(lambda: running(registry, "other"), 10)
    assert "big" not in registry
    faults.failing = lambda call: False
    result = reloader.reload()
    assert result.added == ["big"] and not result.failed
    gwait(lambda: running(registry, "big"), 10)
    assert registry.get("big").origin == "config"
