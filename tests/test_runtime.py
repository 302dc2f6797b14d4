"""supervisor.runtime without a server: the token, server.json, and how the CLI finds a server."""
from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from supervisor import runtime
from supervisor.config import Config
from supervisor.exceptions import ConfigError

from support.waiting import wait_for


def test_generated_tokens_are_long_random_and_url_safe() -> None:
    """A generated token has 32 random bytes (43 URL-safe characters) and never repeats."""
    tokens = {runtime.generate_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) >= 43 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


def test_with_token_generates_keeps_or_refuses() -> None:
    """No token: one is generated. A configured one is kept. no_token is loopback only."""
    config, generated = runtime.with_token(Config())
    assert generated and config.token and len(config.token) >= 43
    assert runtime.with_token(Config(token="mine")) == (Config(token="mine"), False)
    assert runtime.with_token(Config(no_token=True, host="::1"))[0].token is None
    with pytest.raises(ConfigError, match="--no-token"):
        runtime.with_token(Config(no_token=True, host="0.0.0.0"))


def test_no_token_refuses_wildcard_hosts_and_origins() -> None:
    """Without a token, ``allowed_hosts = ["*"]`` (DNS rebinding gets through: the Origin check
    compares Origin with Host) and ``cors_origins = ["*"]`` are refused, naming the key; with a
    token, or with listed names, they are accepted."""
    with pytest.raises(ConfigError, match=r"^allowed_hosts: refusing '\*' with no_token"):
        runtime.with_token(Config(no_token=True, allowed_hosts=("*",)))
    with pytest.raises(ConfigError, match=r"^allowed_hosts: "):
        runtime.with_token(Config(no_token=True, allowed_hosts=("agents.example", "*")))
    with pytest.raises(ConfigError, match=r"^cors_origins: refusing '\*' with no_token"):
        runtime.with_token(Config(no_token=True, cors_origins=("*",)))
    assert runtime.with_token(Config(no_token=True, allowed_hosts=("agents.example",)))[0].token is None
    assert runtime.with_token(Config(allowed_hosts=("*",), cors_origins=("*",)))[0].token


def test_runtime_file_is_private_from_the_start(tmp_path: Path) -> None:
    """server.json is written with mode 0600 (a leftover temporary file of another mode
    included), replaces an older one, and holds exactly url, pid and token."""
    leftover = tmp_path / f".server.json.{os.getpid()}.tmp"
    leftover.write_text("old")
    leftover.chmod(0o644)
    (tmp_path / "server.json").write_text("{}")
    path = runtime.write_runtime_file(tmp_path, "http://127.0.0.1:9", "tok")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://127.0.0.1:9", "pid": os.getpid(), "token": "tok"}
    assert not leftover.exists()


def test_only_the_owner_removes_the_runtime_file(tmp_path: Path) -> None:
    """A server removes server.json only while it is its own (another may have replaced it)."""
    runtime.write_runtime_file(tmp_path, "http://127.0.0.1:9", "tok", pid=1)
    assert runtime.remove_runtime_file(tmp_path) is False
    assert (tmp_path / "server.json").exists()
    assert runtime.remove_runtime_file(tmp_path, pid=1) is True
    assert not (tmp_path / "server.json").exists()
    assert runtime.remove_runtime_file(tmp_path, pid=1) is False  # gone already: no error


@pytest.mark.parametrize("text", ["{not json", "[]", '{"url": 1, "pid": 2}', '{"url": "u", "pid": "2"}',
                                  '{"url": "u"}'])
def test_a_damaged_runtime_file_is_a_clear_error(tmp_path: Path, text: str) -> None:
    """A damaged server.json is an error naming the file, not a crash or a silent default."""
    (tmp_path / "server.json").write_text(text)
    with pytest.raises(runtime.RuntimeFileError, match="server.json is damaged"):
        runtime.read_runtime_file(tmp_path)


def environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), **extra}


def test_resolve_prefers_flags_then_environment_then_the_runtime_file(tmp_path: Path) -> None:
    """URL and token: a flag beats the environment, which beats the default data dir's file."""
    data = tmp_path / ".local" / "state" / "agent-supervisor"
    data.mkdir(parents=True)
    runtime.write_runtime_file(data, "http://127.0.0.1:9001", "from-file")
    env = environ(tmp_path)
    default = runtime.resolve(environ=env)
    assert (default.url, default.token) == ("http://127.0.0.1:9001", "from-file")
    both = environ(tmp_path, AGENT_SUPERVISOR_URL="http://127.0.0.1:9002", AGENT_SUPERVISOR_TOKEN="from-env")
    found = runtime.resolve(environ=both)
    assert (found.url, found.token, found.runtime) == ("http://127.0.0.1:9002", "from-env", None)
    flagged = runtime.resolve("http://127.0.0.1:9003", "from-flag", environ=both)
    assert (flagged.url, flagged.token) == ("http://127.0.0.1:9003", "from-flag")
    token_only = runtime.resolve(environ=environ(tmp_path, AGENT_SUPERVISOR_TOKEN="t"))
    assert (token_only.url, token_only.token) == ("http://127.0.0.1:9001", "t")


def test_the_file_token_goes_only_to_the_files_url(tmp_path: Path) -> None:
    """A URL given by flag or environment gets the file's token only if it is the file's
    server (same scheme, host and port): the token is never sent to another server."""
    runtime.write_runtime_file(tmp_path, "http://127.0.0.1:9001", "secret")
    env = environ(tmp_path)
    assert runtime.resolve("http://127.0.0.1:9001/", data_dir=str(tmp_path), environ=env).token == "secret"
    for other in ("http://127.0.0.1:9002", "http://localhost:9001", "https://127.0.0.1:9001", "evil.example:9001"):
        assert runtime.resolve(other, data_dir=str(tmp_path), environ=env).token is None, other


def test_resolve_reads_the_data_dir_asked_for(tmp_path: Path) -> None:
    """--data-dir, else $AGENT_SUPERVISOR_DATA_DIR, names the data dir whose file is read;
    with none anywhere the URL is the default and there is no token."""
    for name, port in (("a", 9001), ("b", 9002)):
        (tmp_path / name).mkdir()
        runtime.write_runtime_file(tmp_path / name, f"http://127.0.0.1:{port}", f"token-{name}")
    env = environ(tmp_path)
    assert runtime.resolve(data_dir=str(tmp_path / "a"), environ=env).token == "token-a"
    assert runtime.resolve(data_dir=str(tmp_path / "b"), environ=env).url == "http://127.0.0.1:9002"
    by_env = runtime.resolve(environ=environ(tmp_path, AGENT_SUPERVISOR_DATA_DIR=str(tmp_path / "b")))
    assert by_env.token == "token-b"
    nothing = runtime.resolve(environ=env)
    assert (nothing.url, nothing.token, nothing.runtime) == (runtime.DEFAULT_URL, None, None)


def test_a_runtime_file_whose_server_died_is_not_used(tmp_path: Path) -> None:
    """server.json of a dead pid gives neither its URL nor its token: asked for the data dir's
    server, resolve says it is not running; given the file's URL, it sends no token, and the
    connection names the stale file."""
    runtime.write_runtime_file(tmp_path, "http://127.0.0.1:9001", "t", pid=2**22 + 12345)
    with pytest.raises(runtime.ServerNotRunning, match="server.json .pid 4206649, http://127.0.0.1:9001. is not running"):
        runtime.resolve(data_dir=str(tmp_path), environ=environ(tmp_path))
    found = runtime.resolve("http://127.0.0.1:9001", data_dir=str(tmp_path), environ=environ(tmp_path))
    assert found.token is None and found.runtime is None and found.stale is not None
    assert str(tmp_path / "server.json") in found.describe() and "not running" in found.describe()
    runtime.write_runtime_file(tmp_path, "http://127.0.0.1:9001", "t", pid=os.getpid())
    alive = runtime.resolve(data_dir=str(tmp_path), environ=environ(tmp_path))
    assert (alive.token, alive.stale) == ("t", None) and "not running" not in alive.describe()
    dead = dataclasses.replace(alive, runtime=dataclasses.replace(alive.runtime, pid=2**22 + 1))  # type: ignore[type-var]
    assert "not running" in dead.describe()  # it died since


def test_a_zombie_or_a_bad_pid_counts_as_gone(tmp_path: Path) -> None:
    """A server killed but not yet reaped (a zombie) and pids 0 or below are not alive."""
    import subprocess

    child = subprocess.Popen(["true"])
    wait_for(lambda: open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] == "Z", 5)
    try:
        for pid in (child.pid, 0, -1):
            runtime.write_runtime_file(tmp_path, "http://127.0.0.1:9001", "t", pid=pid)
            with pytest.raises(runtime.ServerNotRunning):
                runtime.resolve(data_dir=str(tmp_path), environ=environ(tmp_path))
    finally:
        child.wait()
