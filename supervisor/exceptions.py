"""Every error the core raises on purpose, under one base class.

The API turns a :class:`SupervisorError` into a JSON error body: ``code`` is the machine-readable
``error.code``, ``status`` the HTTP status, and ``str(exc)`` a message a user can act on.
"""
from __future__ import annotations


class SupervisorError(Exception):
    """Base of every expected failure; anything else is a bug."""

    code = "supervisor_error"
    status = 500


class InvalidRequest(SupervisorError):
    """A field of an agent definition or a request is malformed."""

    code = "invalid_request"
    status = 400


class InvalidName(InvalidRequest):
    """An agent name that is empty, too long, or not made of letters, digits and ``._-``."""

    code = "invalid_name"


class InvalidCommand(InvalidRequest):
    """An empty argv, or one whose items are not strings."""

    code = "invalid_command"


class ExecutableNotFound(InvalidRequest):
    """``argv[0]`` is not an executable file on the agent's PATH."""

    code = "executable_not_found"


class InvalidCwd(InvalidRequest):
    """The working directory does not exist or is not a directory."""

    code = "invalid_cwd"


class SpawnError(InvalidRequest):
    """The program was found but could not be started (exec or fork failed)."""

    code = "spawn_failed"


class InvalidExtractor(InvalidRequest):
    """An extractor whose pattern does not compile, or whose fields are malformed."""

    code = "invalid_extractor"


class UnknownProfile(InvalidRequest):
    """A ``profile`` that the configuration does not define."""

    code = "unknown_profile"


class ConfigError(SupervisorError):
    """The configuration file or an ``AGENT_SUPERVISOR_*`` variable holds a bad value."""

    code = "config_error"
    status = 500


class DataDirError(SupervisorError):
    """The data directory cannot be created or written to."""

    code = "data_dir_error"
    status = 500


class DataDirLocked(DataDirError):
    """Another live server holds the data directory's lock."""

    code = "data_dir_locked"


class StorageFull(SupervisorError):
    """Something new cannot be kept: the data directory's file system is full (or over quota)."""

    code = "storage_full"
    status = 507


class StorageFailed(SupervisorError):
    """Something new cannot be kept: the data directory cannot be written (I/O error, read-only)."""

    code = "storage_failed"
    status = 503


class AgentNotFound(SupervisorError):
    """No agent by that name."""

    code = "agent_not_found"
    status = 404


class AgentRunning(SupervisorError):
    """The operation needs a stopped agent (create over it, delete it) but it is running."""

    code = "agent_running"
    status = 409


class AgentFromConfig(SupervisorError):
    """The agent is defined in the config file: it is changed or removed there (and reloaded),
    not over the API."""

    code = "agent_from_config"
    status = 409


class AgentNotRunning(SupervisorError):
    """The operation needs a live process (input, resize) but the agent has none."""

    code = "agent_not_running"
    status = 409


class TooManyAgents(SupervisorError):
    """The configured maximum number of agents is reached."""

    code = "too_many_agents"
    status = 503


class NodeUnavailable(SupervisorError):
    """The node that owns the agent did not answer in time (down, partitioned, overloaded)."""

    code = "node_unavailable"
    status = 504


class NameTaken(SupervisorError):
    """Another node of the cluster has an agent of that name: names are unique in a cluster."""

    code = "agent_name_taken"
    status = 409


class RemoteError(SupervisorError):
    """An error the owning node answered a forwarded request with, passed on as it was."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
