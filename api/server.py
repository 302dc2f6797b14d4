"""Run the application under gevent's WSGI server until SIGINT or SIGTERM.

Shutdown is graceful: stop accepting, stop every agent with its grace period (their final
events still reach the streams), end every stream, flush history.
"""
from __future__ import annotations

import errno
import gc
import logging
import resource
import signal
import socket
import sys
from collections.abc import Callable

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

from supervisor import files, runtime
from supervisor.config import Config, is_loopback
from supervisor.exceptions import ConfigError

from . import close_app, create_app
from .ext import EXTENSION, Supervisor
from .handler import handler_for

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 4096


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one: each stream client is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
        except (ValueError, OSError):
            pass
    return soft


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a :class:`ConfigError` that says what to do about it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use (is another agent-supervisor running?);"
                " choose another with --port"
            ) from exc
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def local_url(listener: socket.socket) -> str:
    """The URL this machine reaches the server at: the bound address, or for a wildcard bind
    (``0.0.0.0``, ``::``) the loopback one (what the runtime file and the command line use)."""
    host, port = listener.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def network_url(listener: socket.socket) -> str:
    """The URL other machines reach the server at: the bound address, or for a wildcard bind
    this machine's address on its default route (a UDP ``connect`` sends nothing); the
    loopback URL when there is no network."""
    host, port = listener.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        # Documentation prefixes (RFC 5737, 3849) are routed like the Internet; "::" takes
        # IPv4 connections too, so either address will do.
        probes = [(socket.AF_INET, "192.0.2.1")]
        if host == "::":
            probes.insert(0, (socket.AF_INET6, "2001:db8::1"))
        found = next((address for family, probe in probes if (address := _route_address(family, probe))), None)
        if found is None:
            return local_url(listener)
        host = found
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _route_address(family: socket.AddressFamily, probe: str) -> str | None:
    """This machine's address on the route to ``probe``, or None (no network)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect((probe, 9))
            address: str = udp.getsockname()[0]
    except OSError:
        return None
    return None if address in ("0.0.0.0", "::") else address


def demo_agent() -> dict[str, object]:
    """The agent ``serve --demo`` starts: supervisor.demo_agent, restarted whenever it ends."""
    return {
        "name": "demo",
        "command": [sys.executable, "-u", "-m", "supervisor.demo_agent"],
        "restart": {"mode": "always", "max_restarts": 1000, "backoff_s": 2, "backoff_max_s": 2},
    }


def _reload_on_signal(ext: Supervisor) -> None:
    """SIGHUP: reload the config file's agents, like ``agent-supervisor reload``; a file that
    does not check changes nothing, and the log says why."""
    try:
        result = ext.reloader.reload()
    except ConfigError as exc:
        log.error("SIGHUP: the configuration was not reloaded: %s; nothing was changed", exc)
        return
    except Exception:  # noqa: BLE001 - a signal handler's greenlet has nobody to raise to
        log.exception("SIGHUP: reloading the configuration failed")
        return
    if result.restart_needed:
        log.warning("SIGHUP: these settings only change with a restart of the server: %s",
                    ", ".join(result.restart_needed))


def run_server(config: Config, ready: Callable[[str, str], None] | None = None, demo: bool = False,
               load: Callable[[], Config] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; SIGHUP reloads the config file's agents (``load`` reads it
    again, with the same flags). ``ready(url, network_url)`` is called once the socket
    listens and the runtime file is written (``url`` is this machine's way in, ``network_url``
    other machines': the same on loopback); ``demo`` starts the demo agent (replacing an
    earlier one of that name).

    Secure by default: a config without a token gets a generated one (pass it through
    :func:`supervisor.runtime.with_token` first to know it). Raises :class:`ConfigError` for
    ``no_token`` on a non-loopback address and for a port that is taken.
    """
    config, _ = runtime.with_token(config)
    raise_fd_limit()
    listener = bind(config.host, config.port)
    app = create_app(config, load=load)
    ext: Supervisor = app.extensions[EXTENSION]
    server = WSGIServer(
        listener,
        app,
        handler_class=handler_for(config.request_timeout_s, config.token),
        log=logging.getLogger("api.access"),
        error_log=logging.getLogger("api.server"),
    )
    stopping = gevent.event.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stopping.set)
    gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(_reload_on_signal, ext))
    url = local_url(listener)
    try:
        # Before accepting: a client that reads the file finds it current (connections that
        # come first wait in the listen queue).
        runtime.write_runtime_file(config.data_dir, url, config.token)
    except OSError as exc:
        if exc.errno in files.FULL:  # a full disk must not keep the agents from being listed
            log.warning("cannot write %s (%s): the command line will not find this server by itself;"
                        " pass --url and --token", runtime.runtime_path(config.data_dir), files.describe(exc))
        else:
            listener.close()
            close_app(app)
            raise ConfigError(f"cannot write {runtime.runtime_path(config.data_dir)}: {exc.strerror or exc}") from exc
    server.start()
    log.info("serving on %s (data in %s)", url, config.data_dir)
    if not is_loopback(listener.getsockname()[0]):
        log.warning("listening on %s over plain HTTP: the token and everything the agents print cross"
                    " the network unencrypted; on a network you do not trust, put it behind a TLS"
                    " reverse proxy or reach it through an SSH tunnel", network_url(listener))
    if config.no_token:
        log.warning("authentication is off (--no-token): any user or program on this machine can"
                    " run commands as you through %s", url)
    if "*" in config.allowed_hosts:
        log.warning("allowed_hosts has '*': the Host check is off, so a DNS-rebinding page reaches the"
                    " server; only the token keeps it out")
    if "*" in config.cors_origins:
        log.warning("cors_origins has '*': a page of any web site may call the API with a token it holds")
    if demo:
        if "demo" in ext.registry and ext.registry.get("demo").active:
            ext.registry.stop("demo", wait=True)
        ext.registry.create(demo_agent())
    # The tens of thousands of objects from imports and start-up live as long as the process:
    # keep them out of the collector's full passes, which otherwise stop the hub (and every
    # stream) for 5-30 ms each.
    gc.collect()
    gc.freeze()
    if ready is not None:
        ready(url, network_url(listener))
    try:
        stopping.wait()
        log.info("shutting down: stopping agents")
    finally:
        server.close()  # stop accepting
        runtime.remove_runtime_file(config.data_dir)
        close_app(app)  # stops the agents, then ends the streams
        server.stop(timeout=2)
        log.info("stopped")

