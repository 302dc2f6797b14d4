"""What an agent is: its validated definition, built from a user's request or a saved file.

:func:`build_spec` is the one place user input about an agent is checked; every problem becomes
a specific :class:`~supervisor.exceptions.InvalidRequest` subclass with a message a user can act
on, which the API returns as a 400.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import LEFTOVERS, SCREEN_MODES, Config
from .exceptions import InvalidName, InvalidRequest
from .extractors import ExtractorSet, check_specs, compile_extractors
from .names import AGENT_NAME_RULE, is_agent_name
from .process import default_env, resolve_command

RESTART_MODES = ("never", "on-failure", "always")

#: The fields of an agent definition (``POST /api/agents``, ``[agents.NAME]`` less the name).
AGENT_FIELDS = frozenset({
    "name", "command", "profile", "args", "cwd", "env", "extractors", "cols", "rows",
    "restart", "stop_grace_s", "leftovers", "screen",
})


def validate_name(name: object) -> str:
    """Return ``name`` if it is a legal agent name (see :mod:`supervisor.names`); raise
    :class:`InvalidName` otherwise."""
    if not isinstance(name, str) or not name:
        raise InvalidName("name is required: letters, digits and ._- (at most 64)")
    if not is_agent_name(name):
        raise InvalidName(f"invalid agent name {name[:80]!r}: use {AGENT_NAME_RULE}")
    return name


@dataclass(frozen=True)
class RestartPolicy:
    """When a run that ended is followed by another, supervisord/PM2 style.

    ``never``: never. ``on-failure``: when it exited non-zero or was killed by a signal (a stop
    by the user never counts). ``always``: whenever it ended by itself. At most
    ``max_restarts`` in a row, waiting ``backoff_s * 2**(n-1)`` (capped at ``backoff_max_s``)
    before the n-th.
    """

    mode: str = "never"
    max_restarts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class AgentSpec:
    """A validated agent definition; ``command`` is the full argv (profile's, then ``args``)."""

    name: str
    command: list[str]
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    extractors: list[dict[str, Any]] = field(default_factory=list)
    cols: int = 120
    rows: int = 40
    profile: str | None = None
    args: list[str] = field(default_factory=list)
    restart: RestartPolicy = RestartPolicy()
    stop_grace_s: float | None = None
    leftovers: str | None = None  # None: the server's setting
    #: The virtual screen: ``auto`` (when the program enters the alternate screen), ``on``, ``off``.
    screen: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AgentSpec:
        """Rebuild a saved spec (no validation of the program: it may be gone, and that is the
        run's failure, not the load's)."""
        data = dict(raw)
        data["restart"] = RestartPolicy(**data.get("restart") or {})
        return cls(**data)


def _str_list(body: Mapping[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{key} must be a list of strings")
    return list(value)


def _int_in(body: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{key} must be an integer from {low} to {high}, not {value!r}")
    return value


def _number(value: Any, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InvalidRequest(f"{key} must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


def _restart(value: Any) -> RestartPolicy:
    if value is None:
        return RestartPolicy()
    if isinstance(value, str):
        value = {"mode": value}
    if not isinstance(value, Mapping):
        raise InvalidRequest("restart must be 'never', 'on-failure', 'always' or an object")
    unknown = set(value) - {"mode", "max_restarts", "backoff_s", "backoff_max_s"}
    if unknown:
        raise InvalidRequest(f"restart has unknown field(s): {', '.join(sorted(unknown))}")
    mode = value.get("mode", "never")
    if mode not in RESTART_MODES:
        raise InvalidRequest(f"restart mode must be one of {', '.join(RESTART_MODES)}, not {mode!r}")
    max_restarts = value.get("max_restarts", 3)
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or not 0 <= max_restarts <= 1000:
        raise InvalidRequest("restart.max_restarts must be an integer from 0 to 1000")
    backoff = _number(value.get("backoff_s", 1.0), "restart.backoff_s", 0.0, 3600.0)
    backoff_max = _number(value.get("backoff_max_s", 60.0), "restart.backoff_max_s", 0.0, 86400.0)
    return RestartPolicy(mode, max_restarts, backoff, max(backoff, backoff_max))


def build_spec(body: Any, config: Config) -> tuple[AgentSpec, ExtractorSet]:
    """Check a user's agent definition and return it with its compiled extractors.

    ``profile`` brings a command, extractors and environment; ``command`` replaces the
    profile's command; ``args`` are appended; ``extractors`` are added to the profile's (or to
    the configured defaults when there is no profile), replacing any of the same name.
    """
    if not isinstance(body, Mapping):
        raise InvalidRequest("the agent definition must be a JSON object")
    try:  # every event about the agent is kept as UTF-8: what cannot be is refused here, not at a write
        json.dumps(body, ensure_ascii=False, default=str).encode()
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"the agent definition is not valid Unicode ({exc.reason}: a lone surrogate)") from None
    unknown = set(body) - AGENT_FIELDS
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(sorted(map(str, unknown)))}; known: {', '.join(sorted(AGENT_FIELDS))}"
        )
    name = validate_name(body.get("name"))
    profile_name = body.get("profile")
    if profile_name is not None and not isinstance(profile_name, str):
        raise InvalidRequest("profile must be a string")
    profile = config.profile(profile_name) if profile_name else None
    command = _str_list(body, "command")
    args = _str_list(body, "args") or []
    if command is None:
        if profile is None:
            raise InvalidRequest("give either command (an argv list) or profile")
        command = list(profile.command)
    argv = command + args
    cwd = body.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise InvalidRequest("cwd must be a string")
    env_in = body.get("env") or {}
    if not isinstance(env_in, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\x00" not in k + v
        for k, v in env_in.items()
    ):
        raise InvalidRequest("env must be an object of string names (no '=') to string values")
    env = {**(profile.env if profile else {}), **env_in}
    cols = _int_in(body, "cols", 120, 10, 1000)
    rows = _int_in(body, "rows", 40, 5, 500)
    # Resolve now, so a missing program or working directory is a 400, not a failed agent.
    resolve_command(argv, cwd, default_env(env, cols, rows))
    user_extractors = body.get("extractors") or []
    if not isinstance(user_extractors, list):
        raise InvalidRequest("extractors must be a list of {name, pattern, flags} objects")
    # The user's own list first, so that an error numbers an extractor by its place in it
    # ("extractor #1" for their first), not in the merged list.
    check_specs(user_extractors)
    base = list(profile.extractors) if profile else list(config.default_extractors)
    user_names = {e["name"] for e in user_extractors}
    merged = [e for e in base if e.get("name") not in user_names] + list(user_extractors)
    extractors = compile_extractors(merged)
    grace = body.get("stop_grace_s")
    leftovers = body.get("leftovers")
    if leftovers is not None and leftovers not in LEFTOVERS:
        raise InvalidRequest(f"leftovers must be one of {', '.join(LEFTOVERS)}, not {leftovers!r}")
    screen = body.get("screen", None)
    if screen is None:
        screen = config.screen
    elif screen not in SCREEN_MODES:
        raise InvalidRequest(f"screen must be one of {', '.join(SCREEN_MODES)}, not {screen!r}")
    spec = AgentSpec(
        name=name,
        command=argv,
        cwd=cwd,
        env=env,
        extractors=extractors.specs(),
        cols=cols,
        rows=rows,
        profile=profile_name,
        args=args,
        restart=_restart(body.get("restart")),
        stop_grace_s=None if grace is None else _number(grace, "stop_grace_s", 0.0, 3600.0),
        leftovers=leftovers,
        screen=screen,
    )
    return spec, extractors
