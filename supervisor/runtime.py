"""How a running server is found: its token, and the runtime file ``server.json``.

Jupyter Server's model: with no token configured, ``serve`` generates one (``secrets``, 32
bytes) and writes ``{url, pid, token}`` to ``<data dir>/server.json``, readable by its owner
only (mode 0600, like supervisord's control socket), replaced on every start and removed on a
clean shutdown. Whoever can read that file can act as the user who started the server, and
nobody else: the command line reads it, so ``agent-supervisor list`` just works.

:func:`resolve` is the command line's search, most explicit first: flags, then
``AGENT_SUPERVISOR_URL`` / ``AGENT_SUPERVISOR_TOKEN``, then the runtime file of the data dir
(``--data-dir``, else the configured one). A token from the runtime file is used only for the
URL written beside it, so it is never sent to another server, and only while the process named
by its ``pid`` exists: a server killed by a signal leaves its file behind, and whatever listens
on that port later (another user's program) must not receive the token.

Stdlib only (the configuration is imported when a data dir must be found): the client side
stays light.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .exceptions import ConfigError, SupervisorError

if TYPE_CHECKING:
    from .config import Config

RUNTIME_FILE = "server.json"
#: Random bytes in a generated token (43 URL-safe characters).
TOKEN_BYTES = 32
DEFAULT_URL = "http://127.0.0.1:8151"
URL_ENV = "AGENT_SUPERVISOR_URL"
TOKEN_ENV = "AGENT_SUPERVISOR_TOKEN"


class RuntimeFileError(SupervisorError):
    """``server.json`` exists but cannot be read or is damaged."""

    code = "runtime_file_error"
    status = 500


class ServerNotRunning(SupervisorError):
    """The data dir's ``server.json`` is left from a server that is no longer running."""

    code = "server_not_running"
    status = 503

    def __init__(self, stale: RuntimeInfo) -> None:
        super().__init__(f"the server of {stale.path} (pid {stale.pid}, {stale.url}) is not running;"
                         " start it with `agent-supervisor serve`, or give --url")
        self.stale = stale


def generate_token() -> str:
    """A new random token, URL-safe (it goes in ``?token=`` as it is)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in the file ``serve --token-file`` names: its first line, stripped (a token
    given as ``--token`` is visible to every user in ``/proc/<pid>/cmdline``; a file is not).
    Raises :class:`ConfigError` for a file that cannot be read or holds no valid token; logs a
    warning when other users may read it."""
    from .config import check_token

    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
        mode = file.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"--token-file: cannot read {str(file)!r}: {reason}") from None
    if mode & 0o077:
        logging.getLogger(__name__).warning(
            "token file %s is readable by other users (mode %04o): chmod 600 it", file, mode & 0o777)
    lines = text.splitlines()
    return check_token(lines[0].strip() if lines else "", f"the first line of {str(file)!r}")


def with_token(config: Config) -> tuple[Config, bool]:
    """``config`` with the token the server will require, and whether it was generated.

    Raises :class:`ConfigError` for ``no_token`` where the token is the only thing left in the
    way: on an address other machines can reach, with ``allowed_hosts`` of ``*`` (the Host check
    is what stops DNS rebinding: a rebound page's Origin matches its Host, so it passes the
    Origin check) and with ``cors_origins`` of ``*`` (every page may call the API).
    """
    from .config import is_loopback

    if config.no_token:
        if not is_loopback(config.host):
            raise ConfigError(
                f"refusing --no-token on {config.host}: without a token anyone who can reach it"
                " could run commands. --no-token is for loopback addresses only"
            )
        if "*" in config.allowed_hosts:
            raise ConfigError(
                "allowed_hosts: refusing '*' with no_token: without the Host check any web page can"
                " reach the server by DNS rebinding and run commands; list the names a proxy"
                " forwards, or keep the token"
            )
        if "*" in config.cors_origins:
            raise ConfigError(
                "cors_origins: refusing '*' with no_token: any web page could call the API and run"
                " commands; list the origins, or keep the token"
            )
        return dataclasses.replace(config, token=None), False
    if config.token:
        return config, False
    return dataclasses.replace(config, token=generate_token()), True


def dashboard_url(url: str, token: str | None) -> str:
    """The address a person opens: the dashboard, with the token for it to take and hide."""
    return f"{url}/?token={token}" if token else f"{url}/"


@dataclass(frozen=True)
class RuntimeInfo:
    """What ``server.json`` says about a running server."""

    url: str
    pid: int
    token: str | None
    path: Path


def runtime_path(data_dir: Path) -> Path:
    return Path(data_dir) / RUNTIME_FILE


def write_runtime_file(data_dir: Path, url: str, token: str | None, pid: int | None = None) -> Path:
    """Write ``server.json`` atomically, mode 0600 from its creation (never readable by others,
    not even for an instant), replacing any earlier one. Raises ``OSError``."""
    path = runtime_path(data_dir)
    body = json.dumps({"url": url, "pid": os.getpid() if pid is None else pid, "token": token},
                      indent=1).encode() + b"\n"
    tmp = path.with_name(f".{RUNTIME_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a leftover file of that name
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def remove_runtime_file(data_dir: Path, pid: int | None = None) -> bool:
    """Remove ``server.json`` if it is this process's (another server may have replaced it).
    Returns whether it was removed; never raises."""
    pid = os.getpid() if pid is None else pid
    try:
        info = read_runtime_file(data_dir)
        if info is None or info.pid != pid:
            return False
        info.path.unlink()
        return True
    except (OSError, RuntimeFileError):
        return False


def read_runtime_file(data_dir: Path) -> RuntimeInfo | None:
    """The runtime file of ``data_dir``, or None if there is none. Raises
    :class:`RuntimeFileError` for one that cannot be read or is damaged."""
    path = runtime_path(data_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RuntimeFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
        url, pid, token = data["url"], data["pid"], data.get("token")
        if not (isinstance(url, str) and isinstance(pid, int) and (token is None or isinstance(token, str))):
            raise TypeError("url must be a string, pid an integer, token a string or null")
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeFileError(
            f"{path} is damaged ({exc}); start the server again, or remove the file"
        ) from None
    return RuntimeInfo(url=url.rstrip("/"), pid=pid, token=token or None, path=path)


@dataclass(frozen=True)
class Connection:
    """Where the command line sends its requests, and why: ``runtime`` is the runtime file it
    read, if it read one."""

    url: str
    token: str | None
    runtime: RuntimeInfo | None = None
    #: A runtime file that was read and ignored: its server's process is gone.
    stale: RuntimeInfo | None = None

    def describe(self) -> str:
        """Where the URL came from, for an error message."""
        if self.stale is not None:
            return f"{self.stale.path} is left from a server (pid {self.stale.pid}) that is not running"
        if self.runtime is not None and same_origin(self.url, self.runtime.url):
            alive = _pid_alive(self.runtime.pid)
            return (f"from {self.runtime.path}" + ("" if alive else
                    f"; its server (pid {self.runtime.pid}) is not running"))
        return ""


def resolve(url: str | None = None, token: str | None = None, data_dir: str | None = None,
            environ: Mapping[str, str] | None = None) -> Connection:
    """The server to talk to: each of URL and token from a flag, else the environment, else
    the runtime file of the data dir; the URL defaults to :data:`DEFAULT_URL`.

    A runtime file whose ``pid`` is gone is not used (its URL nor its token); when the URL was
    to come from it, that is :class:`ServerNotRunning` (nothing is sent anywhere). Raises
    :class:`RuntimeFileError` for a damaged runtime file, and the configuration's
    :class:`ConfigError` when the data dir must be looked up in a bad configuration.
    """
    environ = os.environ if environ is None else environ
    url = url or environ.get(URL_ENV) or None
    token = token or environ.get(TOKEN_ENV) or None
    runtime = stale = None
    if url is None or token is None:
        runtime = read_runtime_file(_data_dir(data_dir, environ))
        if runtime is not None and not _pid_alive(runtime.pid):
            runtime, stale = None, runtime
    if url is None:
        if stale is not None:
            raise ServerNotRunning(stale)
        url = runtime.url if runtime is not None else DEFAULT_URL
    if token is None and runtime is not None and same_origin(url, runtime.url):
        token = runtime.token
    return Connection(url, token, runtime, stale)


def _data_dir(flag: str | None, environ: Mapping[str, str]) -> Path:
    """The data dir ``serve`` would use: the flag, else the configuration's (file, variable)."""
    from .config import load_config

    # The token in the environment is the client's to send, not a setting to check here (a
    # rule of the server's for configured tokens must not stop a client finding its server).
    settings = {key: value for key, value in environ.items() if key != TOKEN_ENV}
    config = load_config(environ=settings, data_dir=flag)
    return Path(config.data_dir)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs name one server (scheme, host and port)."""
    return _origin(a) == _origin(b)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie, reaped by nobody yet, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
