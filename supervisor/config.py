"""The supervisor's settings, and the profiles that agents are started from.

Precedence, lowest first: defaults in code < the TOML file < ``AGENT_SUPERVISOR_<FIELD>``
environment variables < keyword overrides (command-line flags; ``None`` means "not given").
Every value is checked when loaded, and a bad one raises :class:`ConfigError` naming the key,
where it came from and the value, so the server never starts half-configured.

Profiles merge instead of replacing: ``[profiles.codex]`` with only ``command`` keeps the
built-in codex extractors. A new profile without ``extractors`` gets ``default_extractors``.

``[agents.NAME]`` tables are kept here as given (each with where it came from): what they mean is
:mod:`supervisor.config_agents`' to check, when the server starts or reloads them, so that a typo
in one agent never keeps the command line from finding its server.
"""
from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .exceptions import ConfigError, InvalidExtractor, UnknownProfile
from .extractors import MAX_EXTRACTIONS_PER_LINE, MAX_MATCHES_PER_LINE, compile_extractors
from .names import AGENT_NAME_RULE, is_agent_name, is_name
from .profiles import GENERIC, builtin_profiles

ENV_PREFIX = "AGENT_SUPERVISOR_"
#: Names a config file when ``load_config`` is given no path (a missing one is then an error).
CONFIG_ENV = ENV_PREFIX + "CONFIG"

#: How a run's processes are kept together (see supervisor/containment): ``auto`` takes the best
#: that works here (cgroup, then subreaper, then group).
CONTAINMENT_MODES = ("auto", "cgroup", "subreaper", "group")
#: What happens to the processes a run's main process leaves behind when it exits.
LEFTOVERS = ("kill", "keep")

_ORIGIN = re.compile(r"\*|https?://[^/\s?#]+")
# A Host header name: "*" (any), ".example.com" (it and its subdomains), a name, an IPv6 literal.
_HOST_NAME = re.compile(r"\*|\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*|\[?[0-9A-Fa-f:.]+\]?")
_PROFILE_KEYS = frozenset({"command", "extractors", "env", "description"})


@dataclass(frozen=True)
class AgentTable:
    """One ``[agents.NAME]`` table as the file gave it, and where (for error messages)."""

    name: str
    table: Mapping[str, Any]
    source: str


@dataclass(frozen=True)
class Profile:
    """How to start one kind of agent: ``command`` is followed by the agent's own ``args``."""

    name: str
    command: list[str]
    extractors: list[dict[str, Any]]
    env: dict[str, str]
    description: str


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only: the default, safe bind."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: The shortest token a user may configure: a generated one has 43 characters.
MIN_TOKEN_LENGTH = 16


def check_token(raw: object, source: str) -> str:
    """``raw`` if it can be the server's token, else a :class:`ConfigError` that says why
    without showing it: at least :data:`MIN_TOKEN_LENGTH` printable ASCII characters, no space
    (it travels in an ``Authorization`` header, which is ASCII, and in a URL)."""
    if not isinstance(raw, str) or not raw:
        why = "must be a non-empty string"
    elif not (raw.isascii() and raw.isprintable()) or " " in raw:
        why = "must be printable ASCII without spaces"
    elif len(raw) < MIN_TOKEN_LENGTH:
        why = f"must be at least {MIN_TOKEN_LENGTH} characters long (it is {len(raw)}; leave it unset for a generated one)"
    else:
        return raw
    raise ConfigError(f"token: {why} ({source}; the value is not shown)")


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/agent-supervisor``, else ``~/.local/state/agent-supervisor``."""
    state = environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(state):  # the XDG spec says to ignore a relative one
        return Path(state) / "agent-supervisor"
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "state" / "agent-supervisor"


def _builtin(environ: Mapping[str, str]) -> Mapping[str, Profile]:
    return MappingProxyType({
        name: Profile(name=name, **spec) for name, spec in builtin_profiles(environ).items()
    })


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8151
    data_dir: Path = field(default_factory=lambda: default_data_dir(os.environ))
    token: str | None = None  # None: ``serve`` generates one (unless no_token)
    no_token: bool = False  # authentication off on purpose; loopback only
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides the loopback ones
    queue_size: int = 100  # events per SSE client queue
    queue_bytes: int = 1 << 20  # bytes per SSE client queue
    # A client over queue_size/queue_bytes whose socket has taken nothing for this long is
    # dropped (a burst is not slowness); no queue grows past 8 x queue_bytes.
    queue_stall_s: float = 0.5
    # "os": each batch of events is written to the operating system before any client gets it
    # (survives a kill or crash of the server); "fsync": also fsynced (survives power loss).
    durability: str = "os"
    keepalive_s: float = 15.0
    retry_ms: int = 3000
    history_size: int = 10000  # events kept in memory per agent
    history_max_events: int = 1_000_000  # events kept on disk per agent; 0 = no limit
    history_memory_bytes: int = 8 << 20  # bytes of recent events kept in memory per agent
    max_line_length: int = 65536
    partial_line_s: float = 0.25  # how long text without a newline waits to show as a partial line
    screen: str = "auto"  # an agent's virtual screen: auto (from the alternate screen on), on, off
    screen_settle_s: float = 1.0  # a screen still this long is settled: a `screen` event, extractors
    screen_worker: bool = True  # each screen's emulator in a process of its own (off: in the server's)
    stop_grace_s: float = 5.0
    containment: str = "auto"  # one of CONTAINMENT_MODES
    leftovers: str = "kill"  # one of LEFTOVERS; an agent's own ``leftovers`` wins
    max_clients: int = 10000
    max_clients_per_agent: int = 5000
    max_agents: int = 1000
    max_body_bytes: int = 1 << 20
    request_timeout_s: float = 10.0  # a request head or body that stalls this long is dropped
    max_matches_per_line: int = MAX_MATCHES_PER_LINE  # per extractor, on one line
    max_extractions_per_line: int = MAX_EXTRACTIONS_PER_LINE  # all extractors, on one line
    cors_origins: tuple[str, ...] = ()
    output_log_max_bytes: int = 10 << 20  # output.log is rotated before it grows past this; 0: never
    output_log_backups: int = 3  # rotated files kept (output.log.1 is the newest); 0: none
    input_wait_s: float = 2.0  # a prompt pending this long with no output flags waiting_input
    metrics_public: bool = False  # GET /metrics without the token (Prometheus scrapers)
    default_extractors: tuple[dict[str, Any], ...] = field(
        default_factory=lambda: tuple(dict(spec) for spec in GENERIC)
    )
    profiles: Mapping[str, Profile] = field(default_factory=lambda: _builtin(os.environ))
    #: ``[agents.NAME]``: agents the server runs from the file (see supervisor.config_agents).
    agents: Mapping[str, AgentTable] = field(default_factory=lambda: MappingProxyType({}))
    #: The TOML file these settings were read from (``reload`` reads it again), if any.
    config_file: Path | None = None
    # Many nodes (docs/REDIS.md): the event log, the agent registry and the control path go
    # through this Redis (redis://HOST:PORT/DB or unix:///path?db=N); None: the embedded backend.
    redis_url: str | None = None
    node: str = field(default_factory=lambda: default_node_name())  # this server's name in the cluster
    lease_ttl_s: float = 15.0  # a node silent this long is taken for dead: its agents are lost
    redis_buffer_events: int = 100_000  # events kept while Redis is away; then the oldest go
    control_timeout_s: float = 5.0  # how long a command waits for the node that owns the agent

    def profile(self, name: str) -> Profile:
        """The profile called ``name``; raises :class:`UnknownProfile` listing the known ones."""
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise UnknownProfile(f"unknown profile {name!r} (known: {known})") from None

    def public_dict(self) -> dict[str, Any]:
        """Every setting, JSON-ready, for display: no token, and profile env values masked."""
        shown: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "token":
                shown["token_set"] = value is not None
            elif item.name in ("data_dir", "config_file"):
                shown[item.name] = None if value is None else str(value)
            elif item.name == "agents":
                # Like profiles: which variables an agent sets, never their values.
                shown["agents"] = {
                    name: {key: ({k: "***" for k in raw} if key == "env" and isinstance(raw, Mapping) else raw)
                           for key, raw in agent.table.items()}
                    for name, agent in value.items()
                }
            elif item.name == "redis_url":
                shown["redis_url"] = without_password(value) if value else None
            elif item.name in ("cors_origins", "allowed_hosts"):
                shown[item.name] = list(value)
            elif item.name == "default_extractors":
                shown["default_extractors"] = [dict(spec) for spec in value]
            elif item.name == "profiles":
                shown["profiles"] = {
                    name: {
                        "command": list(profile.command),
                        "extractors": [dict(spec) for spec in profile.extractors],
                        # Profile env often carries API keys: show which, never their values.
                        "env": {key: "***" for key in profile.env},
                        "description": profile.description,
                    }
                    for name, profile in value.items()
                }
            else:
                shown[item.name] = value
        return shown


# Each field's kind, which says how its value is read from TOML, from text and checked.
_KINDS: dict[str, str] = {
    "host": "host", "port": "int", "data_dir": "path", "token": "token", "no_token": "bool",
    "allowed_hosts": "hosts", "request_timeout_s": "float", "max_matches_per_line": "int",
    "max_extractions_per_line": "int",
    "queue_size": "int", "queue_bytes": "int", "queue_stall_s": "float", "durability": "choice",
    "keepalive_s": "float", "retry_ms": "int",
    "history_size": "int", "history_max_events": "int", "history_memory_bytes": "int", "max_line_length": "int", "partial_line_s": "float",
    "stop_grace_s": "float", "containment": "choice", "leftovers": "choice",
    "max_clients": "int", "max_clients_per_agent": "int",
    "max_agents": "int", "max_body_bytes": "int", "cors_origins": "origins",
    "default_extractors": "extractors", "profiles": "profiles",
    "output_log_max_bytes": "int", "output_log_backups": "int", "input_wait_s": "float",
    "metrics_public": "bool", "agents": "agents",
    "screen": "choice", "screen_settle_s": "float", "screen_worker": "bool",
    "redis_url": "redis_url", "node": "node", "lease_ttl_s": "float", "redis_buffer_events": "int",
    "control_timeout_s": "float",
}
# (lowest, highest) allowed; ints and floats not listed here must be positive.
_RANGES: dict[str, tuple[float, float]] = {
    "port": (0, 65535),  # 0: any free port
    "retry_ms": (0, math.inf),
    "history_max_events": (0, math.inf),  # 0: keep everything
    "partial_line_s": (0, math.inf),  # 0: show text without a newline at once
    "stop_grace_s": (0, math.inf),  # 0: SIGKILL at once
    "output_log_max_bytes": (0, math.inf),  # 0: output.log is never rotated
    "output_log_backups": (0, 1000),  # 0: a full output.log starts again empty
}
#: The values of the ``screen`` setting (config default, and per agent).
SCREEN_MODES = ("auto", "on", "off")
DURABILITY = ("os", "fsync")
# The values a "choice" setting takes.
_CHOICES: dict[str, tuple[str, ...]] = {"containment": CONTAINMENT_MODES, "leftovers": LEFTOVERS,
                                        "screen": SCREEN_MODES, "durability": DURABILITY}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: object,
) -> Config:
    """Build a :class:`Config` from defaults, a TOML file, the environment and ``overrides``.

    ``path`` defaults to ``$AGENT_SUPERVISOR_CONFIG``, else to
    ``$XDG_CONFIG_HOME/agent-supervisor/config.toml`` (or ``~/.config/...``) if that exists.
    A file named explicitly must exist. A relative ``data_dir`` is taken from the file's
    directory when the file sets it, else from the working directory. Unknown
    ``AGENT_SUPERVISOR_*`` variables are ignored. Raises :class:`ConfigError`; never writes.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    profile_layers: list[tuple[str, dict[str, dict[str, Any]]]] = []
    agents: dict[str, AgentTable] = {}

    def apply(key: str, raw: object, source: str, base: Path | None) -> None:
        if key == "insecure":
            raise ConfigError(
                f"the setting 'insecure' is gone ({source}): a server on any address now has a"
                " token (generated when none is set); no_token turns it off, on loopback only"
            )
        if key not in _KINDS:
            known = ", ".join(sorted(_KINDS))
            raise ConfigError(f"unknown setting {key!r} ({source}); known settings: {known}")
        value = _coerce(key, raw, source, base)
        if key == "profiles":
            profile_layers.append((source, value))
        elif key == "agents":
            agents.update(value)  # a later layer's [agents.NAME] replaces that whole table
        else:
            values[key] = value

    config_path = _find_config(path, environ)
    if config_path is not None:
        for key, raw in _read_toml(config_path).items():
            apply(key, raw, f"in {config_path}", config_path.parent)
    for key in _KINDS:
        text = environ.get(ENV_PREFIX + key.upper())
        if text:  # an empty variable counts as unset
            apply(key, text, f"from ${ENV_PREFIX}{key.upper()}", None)
    for key, raw in overrides.items():
        if raw is not None:
            apply(key, raw, "from the command line", None)

    if "data_dir" not in values:
        values["data_dir"] = default_data_dir(environ)
    defaults = values.setdefault("default_extractors", tuple(dict(spec) for spec in GENERIC))
    values["profiles"] = _merge_profiles(builtin_profiles(environ), profile_layers, defaults)
    values["agents"] = MappingProxyType(agents)
    values["config_file"] = config_path.resolve() if config_path is not None else None
    return Config(**values)


def _find_config(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    if path is None and environ.get(CONFIG_ENV):
        path = environ[CONFIG_ENV]
    if path is not None:
        named = Path(path).expanduser()
        if not named.is_file():
            raise ConfigError(f"config file {str(named)!r} does not exist or is not a file")
        return named
    base = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        home = environ.get("HOME")
        if not home:
            return None
        base = os.path.join(home, ".config")
    implicit = Path(base) / "agent-supervisor" / "config.toml"
    return implicit if implicit.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


_REDIS_URL = re.compile(r"(redis|unix)://\S+")
def is_node_name(name: str) -> bool:
    """1-64 letters, digits and ``._-`` (:func:`supervisor.names.is_name`): a node's name is
    part of Redis keys, as a host name is."""
    return is_name(name)


def default_node_name() -> str:
    """The host name (its first label), as a node name: letters, digits and ``._-``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0])[:64]
    return name or "node"


def without_password(url: str) -> str:
    """A Redis URL fit for logs and ``/healthz``: its password (if any) masked."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}" if "@" in rest else url


def _bad(key: str, why: str, raw: object, source: str) -> ConfigError:
    return ConfigError(f"{key}: {why}, got {raw!r} ({source})")


def _coerce(key: str, raw: object, source: str, base: Path | None) -> Any:
    """``raw`` (a TOML value, or text from the environment or a flag) as ``key``'s type."""
    kind = _KINDS[key]
    if kind in ("int", "float"):
        return _number(key, kind, raw, source)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        word = raw.strip().lower() if isinstance(raw, str) else None
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise _bad(key, "must be true or false", raw, source)
    if kind == "choice":
        choices = _CHOICES[key]
        if not isinstance(raw, str) or raw.strip().lower() not in choices:
            raise _bad(key, f"must be one of {', '.join(choices)}", raw, source)
        return raw.strip().lower()
    if kind == "host":
        if not isinstance(raw, str) or not raw or any(char.isspace() for char in raw):
            raise _bad(key, "must be a host name or address", raw, source)
        return raw
    if kind == "token":
        return check_token(raw, source)
    if kind == "path":
        if not isinstance(raw, str) or not raw:
            raise _bad(key, "must be a directory path", raw, source)
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (base or Path.cwd()) / path
    if kind == "redis_url":
        if not isinstance(raw, str) or not _REDIS_URL.match(raw):
            raise _bad(key, "must be redis://HOST:PORT/DB or unix:///PATH", raw, source)
        return raw
    if kind == "node":
        if not is_name(raw):
            raise _bad(key, "must be 1-64 letters, digits and ._-", raw, source)
        return raw
    if kind == "origins":
        return _origins(key, raw, source)
    if kind == "hosts":
        return _hosts(key, raw, source)
    # Structured settings come as TOML tables or, from text, as JSON.
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise _bad(key, "must be JSON", raw, source) from None
    if kind == "extractors":
        return tuple(_extractors(key, raw, source))
    if kind == "agents":
        return _agent_tables(key, raw, source)
    return _profile_tables(key, raw, source)


def _number(key: str, kind: str, raw: object, source: str) -> int | float:
    value: int | float
    if isinstance(raw, str):
        try:
            value = int(raw.strip()) if kind == "int" else float(raw.strip())
        except ValueError:
            raise _bad(key, f"must be {'an integer' if kind == 'int' else 'a number'}", raw,
                       source) from None
    elif isinstance(raw, bool) or not isinstance(raw, (int, float)) or (
        kind == "int" and isinstance(raw, float)
    ):
        raise _bad(key, f"must be {'an integer' if kind == 'int' else 'a number'}", raw, source)
    else:
        value = float(raw) if kind == "float" else raw
    low, high = _RANGES.get(key, (0, math.inf))
    positive = key not in _RANGES
    if not math.isfinite(value) or value < low or value > high or (positive and value <= 0):
        if positive:
            why = "must be more than 0"
        elif high == math.inf:
            why = f"must be {low:g} or more"
        else:
            why = f"must be between {low:g} and {high:g}"
        raise _bad(key, why, raw, source)
    return value


def _origins(key: str, raw: object, source: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        items: list[object] = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise _bad(key, "must be a list of origins", raw, source)
    for item in items:
        if not isinstance(item, str) or not _ORIGIN.fullmatch(item):
            raise _bad(key, "each origin must be * or scheme://host[:port] with no path", item,
                       source)
    return tuple(str(item) for item in items)


def _hosts(key: str, raw: object, source: str) -> tuple[str, ...]:
    """Host names without a port: ``name``, ``.suffix`` (it and its subdomains) or ``*``."""
    if isinstance(raw, str):
        items: list[object] = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise _bad(key, "must be a list of host names", raw, source)
    for item in items:
        if not isinstance(item, str) or not _HOST_NAME.fullmatch(item):
            raise _bad(key, "each host must be a name, .suffix, an address or * (no port)",
                       item, source)
    return tuple(str(item).lower().strip("[]") for item in items)


def _extractors(key: str, raw: object, source: str) -> list[dict[str, Any]]:
    try:
        if not isinstance(raw, (list, tuple)):
            raise InvalidExtractor("extractors must be a list of {name, pattern, flags} objects")
        return compile_extractors(raw).specs()
    except InvalidExtractor as exc:
        raise ConfigError(f"{key}: {exc} ({source})") from None


def _profile_tables(key: str, raw: object, source: str) -> dict[str, dict[str, Any]]:
    """Each ``[profiles.NAME]`` table, checked; only the fields it gives."""
    if not isinstance(raw, Mapping):
        raise _bad(key, "must be a table of [profiles.NAME] tables", raw, source)
    tables: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        where = f"profiles.{name}"
        if not is_name(name):
            raise _bad(where, "profile names are 1 to 64 letters, digits or '_-.'", name, source)
        if not isinstance(table, Mapping):
            raise _bad(where, "must be a table", table, source)
        unknown = sorted(str(item) for item in table if item not in _PROFILE_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)} ({source}); "
                f"allowed: {', '.join(sorted(_PROFILE_KEYS))}"
            )
        checked: dict[str, Any] = {}
        if "command" in table:
            command = table["command"]
            if (not isinstance(command, list) or not command
                    or not all(isinstance(arg, str) and arg for arg in command)):
                raise _bad(f"{where}.command", "must be a non-empty list of strings", command,
                           source)
            checked["command"] = list(command)
        if "extractors" in table:
            checked["extractors"] = _extractors(f"{where}.extractors", table["extractors"], source)
        if "env" in table:
            checked["env"] = _env(f"{where}.env", table["env"], source)
        if "description" in table:
            if not isinstance(table["description"], str):
                raise _bad(f"{where}.description", "must be a string", table["description"],
                           source)
            checked["description"] = table["description"]
        tables[name] = checked
    return tables


def _agent_tables(key: str, raw: object, source: str) -> dict[str, AgentTable]:
    """Each ``[agents.NAME]`` table, kept as given: only its name and that it is a table are
    checked here (the fields are :func:`supervisor.config_agents.build`'s)."""
    if not isinstance(raw, Mapping):
        raise _bad(key, "must be a table of [agents.NAME] tables", raw, source)
    tables: dict[str, AgentTable] = {}
    for name, table in raw.items():
        if not isinstance(name, str) or not is_agent_name(name):
            raise _bad(f"agents.{name}", f"agent names are {AGENT_NAME_RULE}", name, source)
        if not isinstance(table, Mapping):
            raise _bad(f"agents.{name}", "must be a table", table, source)
        tables[name] = AgentTable(name, MappingProxyType(dict(table)), source)
    return tables


def _env(key: str, raw: object, source: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise _bad(key, "must be a table of NAME = \"value\"", raw, source)
    for name, value in raw.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise _bad(key, "variable names must be non-empty, without '=' or NUL", name, source)
        if not isinstance(value, str) or "\0" in value:
            raise _bad(f"{key}.{name}", "must be a string without NUL", value, source)
    return dict(raw)


def _merge_profiles(
    builtins: Mapping[str, Mapping[str, Any]],
    layers: list[tuple[str, dict[str, dict[str, Any]]]],
    default_extractors: tuple[dict[str, Any], ...],
) -> Mapping[str, Profile]:
    merged: dict[str, dict[str, Any]] = {name: dict(spec) for name, spec in builtins.items()}
    for source, tables in layers:
        for name, table in tables.items():
            if name not in merged and "command" not in table:
                raise ConfigError(f"profiles.{name}: a new profile needs a command ({source})")
            merged.setdefault(name, {}).update(table)
    return MappingProxyType({
        name: Profile(
            name=name,
            command=list(spec["command"]),
            extractors=[dict(item) for item in spec.get("extractors", default_extractors)],
            env=dict(spec.get("env", {})),
            description=str(spec.get("description", "")),
        )
        for name, spec in merged.items()
    })
