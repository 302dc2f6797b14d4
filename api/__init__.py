"""The HTTP side of agent-supervisor: a Flask application factory and the SSE manager.

``create_app(config)`` builds everything (the registry of agents, the stream manager) and keeps
it in ``app.extensions["agent_supervisor"]``; there is no module-level app. Serve it with
:func:`api.server.run_server`, which uses gevent's WSGI server: the streams depend on it.
:func:`close_app` undoes what ``create_app`` did (Flask has no hook for the end of an app, only
for the end of each request's context): the server calls it at shutdown, tests after each app.
"""
from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from supervisor import config_agents
from supervisor.config import Config, load_config
from supervisor.registry import Registry
from supervisor.reload import Reloader
from supervisor.screen.live import LiveScreen
from supervisor.store import AgentRecord

from . import agents, auth, errors, metrics, monitor, output, pages, reload, screen, security, stream
from .ext import EXTENSION, Supervisor
from .shapes import agent_json
from .sse import SSEManager
from .sse.screens import ScreenStreams


def create_app(config: Config | None = None, registry: Registry | None = None,
               load: Callable[[], Config] | None = None) -> Flask:
    """Build the application. ``registry`` defaults to one on ``config.data_dir``, which the
    app then owns (:func:`close_app` shuts it down) and boots: the config file's agents start
    and the agents the last server left to resume do (a registry passed in stays the caller's).
    ``load`` reads the configuration again for a reload (default: ``config``'s file again).

    ``config.token`` is used as given: None means no authentication (an in-process test app);
    :func:`api.server.run_server` generates one for a real server. Raises
    :class:`~supervisor.exceptions.ConfigError` for ``[agents.NAME]`` tables that do not check."""
    config = config if config is not None else load_config()
    owns_registry = registry is None
    # Checked before anything starts: a bad [agents.NAME] stops the server with the reason.
    desired = config_agents.build(config) if owns_registry else None
    registry = registry if registry is not None else Registry(config)
    app = Flask(__name__, static_folder=str(pages.STATIC_DIR), static_url_path="/static")
    # Werkzeug answers '//' in a path (and a %2F in a name, once decoded) or a missing or extra
    # trailing slash with an HTML 308; Flask sends routing redirects past every error handler.
    # A JSON API answers such a path as what it is: not found (or the path without its slash).
    app.url_map.merge_slashes = app.url_map.strict_slashes = False
    for rule in app.url_map.iter_rules():
        rule.merge_slashes = rule.strict_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order
    eventlog = registry.eventlog

    node = config.node if registry.cluster is not None else None

    def describe(record: AgentRecord) -> dict[str, object]:
        return agent_json(record, eventlog.last_id(record.name), node=node)

    def is_done(name: str) -> bool:
        if name in registry:
            return not registry.get(name).active
        return registry.cluster is None or not registry.cluster.active(name)  # another node's

    registry.describe = describe
    streams = SSEManager(
        eventlog,
        is_done=is_done,
        queue_size=config.queue_size,
        queue_bytes=config.queue_bytes,
        queue_stall_s=config.queue_stall_s,
        keepalive_s=config.keepalive_s,
        retry_ms=config.retry_ms,
        max_clients=config.max_clients,
        max_clients_per_agent=config.max_clients_per_agent,
    )
    streams.start()
    if load is None:
        def load() -> Config:
            return load_config(config.config_file, data_dir=config.data_dir)
    reloader = Reloader(registry, load)

    def live_screen_of(name: str) -> LiveScreen | None:
        return registry.get(name).screen if name in registry else None

    screens = ScreenStreams(
        live_screen_of,
        keepalive_s=config.keepalive_s,
        retry_ms=config.retry_ms,
        max_clients=config.max_clients,
        max_clients_per_agent=config.max_clients_per_agent,
    )
    screens.start()
    app.extensions[EXTENSION] = Supervisor(config, registry, streams, reloader, screens, owns_registry)
    errors.register(app)
    security.register(app, config, authenticate=auth.register(app, config.token, config.cors_origins))
    for blueprint in (agents.bp, output.bp, stream.bp, screen.bp, monitor.bp, metrics.bp, reload.bp, pages.bp):
        app.register_blueprint(blueprint)
    if desired is not None:
        registry.boot(desired)
    return app


def close_app(app: Flask, grace: float | None = None) -> None:
    """End what :func:`create_app` started: stop the agents of a registry the app owns (their
    last events still reach the streams), then end every stream and leave the bus. Idempotent."""
    ext: Supervisor = app.extensions[EXTENSION]
    ext.close(grace)
