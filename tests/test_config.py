"""Tests for supervisor.config: defaults, precedence, validation, profiles."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.config import Config, Profile, default_data_dir, load_config
from supervisor.exceptions import ConfigError, UnknownProfile
from supervisor.profiles import CODEX, GENERIC


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def names(specs: object) -> list[str]:
    return [spec["name"] for spec in specs]  # type: ignore[attr-defined]


# --- defaults and precedence --------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    """With no file, no variables and no overrides, load_config gives the documented defaults."""
    config = load_config(environ={"HOME": str(tmp_path)})
    assert (config.host, config.port, config.token, config.no_token, config.allowed_hosts) == (
        "127.0.0.1", 8151, None, False, ())
    assert (config.max_matches_per_line, config.max_extractions_per_line, config.request_timeout_s) == (
        8, 32, 10.0)
    assert (config.queue_size, config.queue_bytes, config.history_size) == (100, 1 << 20, 10000)
    assert (config.keepalive_s, config.retry_ms, config.partial_line_s) == (15.0, 3000, 0.25)
    assert (config.max_line_length, config.stop_grace_s) == (65536, 5.0)
    assert (config.max_clients, config.max_clients_per_agent, config.max_agents) == (
        10000, 5000, 1000)
    assert (config.max_body_bytes, config.cors_origins) == (1 << 20, ())
    assert config.data_dir == tmp_path / ".local" / "state" / "agent-supervisor"
    assert names(config.default_extractors) == names(GENERIC)
    assert sorted(config.profiles) == ["codex", "npm", "shell"]


def test_plain_config_has_builtin_profiles() -> None:
    """Config() built directly carries the generic extractors and the built-in profiles."""
    config = Config()
    assert names(config.default_extractors) == names(GENERIC)
    assert config.profile("codex").command == ["codex"]


def test_data_dir_follows_xdg_state_home(tmp_path: Path) -> None:
    """An absolute XDG_STATE_HOME holds the data dir; a relative one is ignored, per the spec."""
    state = tmp_path / "state"
    assert default_data_dir({"XDG_STATE_HOME": str(state)}) == state / "agent-supervisor"
    assert default_data_dir({"XDG_STATE_HOME": "rel", "HOME": str(tmp_path)}) == (
        tmp_path / ".local" / "state" / "agent-supervisor")


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    """A variable beats the file and an override beats both; None means not given."""
    path = write(tmp_path, "port = 1001\nhost = '0.0.0.0'\n")
    env = {"AGENT_SUPERVISOR_PORT": "1002"}
    assert load_config(path, environ={}).port == 1001
    assert load_config(path, environ=env).port == 1002
    assert load_config(path, environ=env, port=1003).port == 1003
    assert load_config(path, environ=env, port=None).port == 1002
    assert load_config(path, environ=env, port=1003).host == "0.0.0.0"


def test_every_field_from_the_environment(tmp_path: Path) -> None:
    """Each AGENT_SUPERVISOR_<FIELD> variable is read and converted to the field's type."""
    extractor = [{"name": "boom", "pattern": "boom", "flags": "I"}]
    env = {
        "AGENT_SUPERVISOR_HOST": "::1",
        "AGENT_SUPERVISOR_PORT": "0",
        "AGENT_SUPERVISOR_DATA_DIR": str(tmp_path / "data"),
        "AGENT_SUPERVISOR_TOKEN": "s3cret-from-the-env",
        "AGENT_SUPERVISOR_QUEUE_SIZE": "5",
        "AGENT_SUPERVISOR_QUEUE_BYTES": "4096",
        "AGENT_SUPERVISOR_QUEUE_STALL_S": "0.25",
        "AGENT_SUPERVISOR_DURABILITY": "fsync",
        "AGENT_SUPERVISOR_KEEPALIVE_S": "0.5",
        "AGENT_SUPERVISOR_RETRY_MS": "0",
        "AGENT_SUPERVISOR_HISTORY_SIZE": "7",
        "AGENT_SUPERVISOR_MAX_LINE_LENGTH": "80",
        "AGENT_SUPERVISOR_PARTIAL_LINE_S": "0",
        "AGENT_SUPERVISOR_STOP_GRACE_S": "1",
        "AGENT_SUPERVISOR_CONTAINMENT": "Subreaper",
        "AGENT_SUPERVISOR_LEFTOVERS": "keep",
        "AGENT_SUPERVISOR_MAX_CLIENTS": "3",
        "AGENT_SUPERVISOR_MAX_CLIENTS_PER_AGENT": "2",
        "AGENT_SUPERVISOR_MAX_AGENTS": "9",
        "AGENT_SUPERVISOR_MAX_BODY_BYTES": "100",
        "AGENT_SUPERVISOR_CORS_ORIGINS": "https://a.example, http://localhost:3000,,",
        "AGENT_SUPERVISOR_NO_TOKEN": "yes",
        "AGENT_SUPERVISOR_ALLOWED_HOSTS": "agents.example, .internal.example",
        "AGENT_SUPERVISOR_REQUEST_TIMEOUT_S": "2.5",
        "AGENT_SUPERVISOR_MAX_MATCHES_PER_LINE": "3",
        "AGENT_SUPERVISOR_MAX_EXTRACTIONS_PER_LINE": "4",
        "AGENT_SUPERVISOR_DEFAULT_EXTRACTORS": json.dumps(extractor),
        "AGENT_SUPERVISOR_PROFILES": json.dumps({"py": {"command": ["python3", "-u"]}}),
    }
    config = load_config(environ=env)
    assert config == Config(
        host="::1", port=0, data_dir=tmp_path / "data", token="s3cret-from-the-env", queue_size=5,
        queue_bytes=4096, queue_stall_s=0.25, durability="fsync", keepalive_s=0.5, retry_ms=0, history_size=7,
        max_line_length=80, partial_line_s=0.0, stop_grace_s=1.0, containment="subreaper", leftovers="keep",
        max_clients=3, max_clients_per_agent=2, max_agents=9, max_body_bytes=100,
        cors_origins=("https://a.example", "http://localhost:3000"), no_token=True,
        allowed_hosts=("agents.example", ".internal.example"), request_timeout_s=2.5,
        max_matches_per_line=3, max_extractions_per_line=4,
        default_extractors=({"name": "boom", "pattern": "boom", "flags": "i"},),
        profiles=config.profiles,
    )
    assert config.profile("py") == Profile(
        "py", ["python3", "-u"], [{"name": "boom", "pattern": "boom", "flags": "i"}], {}, "")


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    """An empty AGENT_SUPERVISOR_* variable leaves the lower layer's value in place."""
    path = write(tmp_path, "token = 'from-the-config-file'\n")
    config = load_config(path, environ={"AGENT_SUPERVISOR_TOKEN": "", "AGENT_SUPERVISOR_PORT": ""})
    assert (config.token, config.port) == ("from-the-config-file", 8151)


def test_overrides_accept_text_like_flags() -> None:
    """Overrides may be typed values or the strings a command line gives."""
    config = load_config(environ={}, port="9000", no_token="true", cors_origins="*",
                         keepalive_s=2)
    assert (config.port, config.no_token, config.cors_origins, config.keepalive_s) == (
        9000, True, ("*",), 2.0)


def test_file_values_of_every_kind(tmp_path: Path) -> None:
    """TOML values of each kind load; a relative data_dir is relative to the file."""
    path = write(tmp_path, """
        host = "localhost"
        data_dir = "state"
        keepalive_s = 3
        cors_origins = ["https://a.example"]
        no_token = true
        allowed_hosts = ["[fd00::1]", "*"]
        default_extractors = [{ name = "todo", pattern = "TODO: (.*)" }]
    """)
    config = load_config(path, environ={})
    assert config.data_dir == tmp_path / "state"
    assert (config.keepalive_s, config.cors_origins, config.no_token, config.allowed_hosts) == (
        3.0, ("https://a.example",), True, ("fd00::1", "*"))
    assert config.default_extractors == ({"name": "todo", "pattern": "TODO: (.*)", "flags": ""},)


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    """AGENT_SUPERVISOR_CONFIG names the file when no path is given."""
    path = write(tmp_path, "port = 4242\n")
    assert load_config(environ={"AGENT_SUPERVISOR_CONFIG": str(path)}).port == 4242


def test_implicit_config_file_in_xdg_config_home(tmp_path: Path) -> None:
    """$XDG_CONFIG_HOME/agent-supervisor/config.toml is read when it exists."""
    (tmp_path / "agent-supervisor").mkdir()
    write(tmp_path / "agent-supervisor", "port = 4343\n")
    assert load_config(environ={"XDG_CONFIG_HOME": str(tmp_path)}).port == 4343
    assert load_config(environ={"XDG_CONFIG_HOME": str(tmp_path / "none")}).port == 8151


# --- errors -------------------------------------------------------------------------------------


def test_missing_explicit_file(tmp_path: Path) -> None:
    """A config file named explicitly, as an argument or a variable, must exist."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="nope.toml.*does not exist"):
        load_config(missing, environ={})
    with pytest.raises(ConfigError, match="nope.toml.*does not exist"):
        load_config(environ={"AGENT_SUPERVISOR_CONFIG": str(missing)})


def test_invalid_toml(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the file."""
    path = write(tmp_path, "port = = 3\n")
    with pytest.raises(ConfigError, match="config.toml' is not valid TOML"):
        load_config(path, environ={})


def test_unknown_key_in_file(tmp_path: Path) -> None:
    """A misspelt setting in the file is an error naming it and the file."""
    path = write(tmp_path, "prot = 80\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "unknown setting 'prot'" in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_override() -> None:
    """An override that is not a setting is an error."""
    with pytest.raises(ConfigError, match="unknown setting 'colour' .from the command line"):
        load_config(environ={}, colour="blue")


def test_the_insecure_setting_is_gone_with_a_reason() -> None:
    """The old ``insecure`` setting is refused with what replaced it, not as a mere unknown key."""
    with pytest.raises(ConfigError, match="no_token"):
        load_config(None, {}, insecure=True)


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("port", 70000, "must be between 0 and 65535"),
        ("port", -1, "must be between 0 and 65535"),
        ("port", "http", "must be an integer"),
        ("port", True, "must be an integer"),
        ("port", 80.5, "must be an integer"),
        ("queue_size", 0, "must be more than 0"),
        ("queue_bytes", -5, "must be more than 0"),
        ("queue_stall_s", 0, "must be more than 0"),
        ("durability", "always", "must be one of os, fsync"),
        ("durability", 1, "must be one of os, fsync"),
        ("history_size", 0, "must be more than 0"),
        ("max_line_length", 0, "must be more than 0"),
        ("max_clients", 0, "must be more than 0"),
        ("max_clients_per_agent", 0, "must be more than 0"),
        ("max_agents", 0, "must be more than 0"),
        ("max_body_bytes", 0, "must be more than 0"),
        ("retry_ms", -1, "must be 0 or more"),
        ("keepalive_s", 0, "must be more than 0"),
        ("keepalive_s", "nan", "must be more than 0"),
        ("keepalive_s", "inf", "must be more than 0"),
        ("keepalive_s", "soon", "must be a number"),
        ("partial_line_s", -0.1, "must be 0 or more"),
        ("stop_grace_s", -1, "must be 0 or more"),
        ("containment", "cgrop", "must be one of auto, cgroup, subreaper, group"),
        ("containment", 2, "must be one of auto"),
        ("leftovers", "forget", "must be one of kill, keep"),
        ("no_token", "maybe", "must be true or false"),
        ("no_token", 1, "must be true or false"),
        ("allowed_hosts", ["evil.example:80"], "each host must be"),
        ("allowed_hosts", ["a b"], "each host must be"),
        ("allowed_hosts", 3, "must be a list of host names"),
        ("max_matches_per_line", 0, "must be more than 0"),
        ("max_extractions_per_line", -1, "must be more than 0"),
        ("request_timeout_s", 0, "must be more than 0"),
        ("host", "", "must be a host name"),
        ("host", "a b", "must be a host name"),
        ("host", 5, "must be a host name"),
        ("data_dir", 5, "must be a directory path"),
        ("cors_origins", "https://a.example/", "each origin must be"),
        ("cors_origins", ["ftp://x"], "each origin must be"),
        ("cors_origins", 3, "must be a list of origins"),
        ("default_extractors", "not json", "must be JSON"),
        ("default_extractors", {"name": "x"}, "extractors must be a list"),
        ("default_extractors", [{"name": "x", "pattern": "("}], "extractor 'x': bad pattern"),
        ("profiles", [], "must be a table of [profiles.NAME] tables"),
    ],
)
def test_bad_values_name_key_source_and_value(key: str, value: object, why: str) -> None:
    """A bad override is a ConfigError naming the key, the problem, the value and the source."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, {}, **{key: value})
    message = str(caught.value)
    assert message.startswith(f"{key}: ")
    assert why in message
    assert "from the command line" in message
    if key != "default_extractors":  # those name the extractor instead
        shown = value[0] if isinstance(value, list) and value else value  # the bad item
        assert repr(shown) in message


def test_bad_value_in_file_names_the_file(tmp_path: Path) -> None:
    """A bad value in the file names the key, the value and the file."""
    path = write(tmp_path, "queue_size = -3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"queue_size: must be more than 0, got -3 (in {path})"


def test_bad_value_in_environment_names_the_variable() -> None:
    """A bad variable names the key, the value and the variable."""
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"AGENT_SUPERVISOR_PORT": "99999"})
    assert str(caught.value) == (
        "port: must be between 0 and 65535, got '99999' (from $AGENT_SUPERVISOR_PORT)")


@pytest.mark.parametrize("token, why", [
    ("has a space in it somewhere", "must be printable ASCII without spaces"),
    ("tok\u00e9n-with-an-accent-01", "must be printable ASCII without spaces"),
    ("tab\tin-the-token-12345", "must be printable ASCII without spaces"),
    ("a", "must be at least 16 characters long (it is 1"),
    ("fifteen-chars-x", "must be at least 16 characters long (it is 15"),
])
def test_bad_tokens_are_refused_without_being_echoed(token: str, why: str) -> None:
    """A configured token must be at least 16 printable ASCII characters without spaces; a bad
    one is refused, from any source, with the rule and without its value."""
    for given in ({"environ": {"AGENT_SUPERVISOR_TOKEN": token}}, {"environ": {}, "token": token}):
        with pytest.raises(ConfigError) as caught:
            load_config(**given)
        assert len(token) < 3 or token not in str(caught.value)
        assert str(caught.value).startswith(f"token: {why}")
    assert load_config(environ={}, token="sixteen-chars-ok").token == "sixteen-chars-ok"


# --- profiles -----------------------------------------------------------------------------------


def test_builtin_profiles() -> None:
    """codex, npm and shell exist; shell runs $SHELL from the given environment."""
    config = load_config(environ={"SHELL": "/usr/bin/fish"})
    assert config.profile("codex").command == ["codex"]
    assert names(config.profile("codex").extractors)[: len(CODEX)] == names(CODEX)
    assert config.profile("npm").command == ["npm"]
    assert config.profile("shell").command == ["/usr/bin/fish", "-l"]
    assert load_config(environ={}).profile("shell").command == ["bash", "-l"]


def test_unknown_profile_lists_known_ones() -> None:
    """Asking for a profile that does not exist raises UnknownProfile with the known names."""
    with pytest.raises(UnknownProfile, match=r"unknown profile 'cdx' \(known: codex, npm, shell\)"):
        load_config(environ={}).profile("cdx")


def test_file_profile_adds_and_replaces(tmp_path: Path) -> None:
    """A [profiles.NAME] table adds a profile or replaces the fields of a built-in it gives."""
    path = write(tmp_path, """
        [profiles.codex]
        command = ["/opt/codex/bin/codex", "--full-auto"]
        env = { RUST_LOG = "error" }

        [profiles.aider]
        command = ["aider", "--no-pretty"]
        description = "aider"
        extractors = [{ name = "cost", pattern = 'Cost: \\$(?P<value>[\\d.]+)', flags = "i" }]

        [profiles.plain]
        command = ["sh"]
    """)
    config = load_config(path, environ={}, default_extractors=[{"name": "d", "pattern": "d"}])
    codex = config.profile("codex")
    assert codex.command == ["/opt/codex/bin/codex", "--full-auto"]
    assert codex.env == {"RUST_LOG": "error"}
    assert names(codex.extractors)[: len(CODEX)] == names(CODEX)  # kept from the built-in
    aider = config.profile("aider")
    assert aider.extractors == [{"name": "cost", "pattern": r"Cost: \$(?P<value>[\d.]+)",
                                 "flags": "i"}]
    assert (aider.description, aider.env) == ("aider", {})
    # A new profile without extractors gets the final default_extractors.
    assert config.profile("plain").extractors == [{"name": "d", "pattern": "d", "flags": ""}]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[profiles.x]\ndescription = 'no command'\n", "profiles.x: a new profile needs a command"),
        ("[profiles.x]\ncommand = []\n", "profiles.x.command: must be a non-empty list"),
        ("[profiles.x]\ncommand = 'codex'\n", "profiles.x.command: must be a non-empty list"),
        ("[profiles.x]\ncommand = ['a', '']\n", "profiles.x.command: must be a non-empty list"),
        ("[profiles.x]\ncommand = ['a']\ncmd = 1\n", "profiles.x: unknown key(s) cmd"),
        ("[profiles.x]\ncommand = ['a']\nenv = { A = 1 }\n", "profiles.x.env.A: must be a string"),
        ("[profiles.x]\ncommand = ['a']\nenv = 'A=1'\n", "profiles.x.env: must be a table"),
        ("[profiles.x]\ncommand = ['a']\ndescription = 3\n", "profiles.x.description: must be"),
        ("[profiles.'a b']\ncommand = ['a']\n", "profiles.a b: profile names are"),
        ("profiles = { x = 1 }\n", "profiles.x: must be a table"),
        ("[profiles.codex]\nextractors = [{ name = 'e', pattern = '(?=x)' }]\n",
         "profiles.codex.extractors: extractor 'e': unsupported construct"),
        ("[profiles.codex]\nextractors = [{ name = 'e', pattern = 'x', color = 'red' }]\n",
         "profiles.codex.extractors: extractor 'e': unknown key(s) color"),
    ],
)
def test_bad_profiles(tmp_path: Path, table: str, message: str) -> None:
    """A malformed profile table is a ConfigError naming the profile field and the file."""
    path = write(tmp_path, table)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


# --- display ------------------------------------------------------------------------------------


def test_public_dict_hides_secrets(tmp_path: Path) -> None:
    """public_dict has every setting but the token, masks profile env values and is JSON-ready."""
    path = write(tmp_path, "[profiles.codex]\nenv = { OPENAI_API_KEY = 'sk-123' }\n")
    config = load_config(path, environ={"HOME": str(tmp_path)}, token="s3cret-of-sixteen")
    shown = config.public_dict()
    text = json.dumps(shown)
    assert "s3cret" not in text and "sk-123" not in text
    assert "token" not in shown and shown["token_set"] is True
    assert shown["profiles"]["codex"]["env"] == {"OPENAI_API_KEY": "***"}
    assert shown["data_dir"] == str(tmp_path / ".local" / "state" / "agent-supervisor")
    assert set(shown) == {f for f in Config.__dataclass_fields__ if f != "token"} | {"token_set"}
