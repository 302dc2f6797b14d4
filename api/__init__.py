"""The HTTP side of agent-supervisor: a Flask application factory and the SSE manager.

``create_app(config)`` builds everything (the registry of agents, the stream manager) and keeps
it in ``app.extensions["agent_supervisor"]``; there is no module-level app. Serve it with
:func:`api.server.run_server`, which uses gevent's WSGI server: the streams depend on it.
"""
from __future__ import annotations

from flask import Flask

from supervisor.config import Config, load_config
from supervisor.registry import Registry

from . import agents, auth, errors, monitor, pages, security, stream
from .ext import EXTENSION, Supervisor
from .sse_manager import SSEManager


def create_app(config: Config | None = None, registry: Registry | None = None) -> Flask:
    """Build the application. ``registry`` defaults to one on ``config.data_dir``.

    ``config.token`` is used as given: None means no authentication (an in-process test app);
    :func:`api.server.run_server` generates one for a real server."""
    config = config if config is not None else load_config()
    registry = registry if registry is not None else Registry(config)
    app = Flask(__name__, static_folder=str(pages.STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order

    def is_done(name: str) -> bool:
        return name not in registry or not registry.get(name).active

    streams = SSEManager(
        registry.eventlog,
        is_done=is_done,
        queue_size=config.queue_size,
        queue_bytes=config.queue_bytes,
        keepalive_s=config.keepalive_s,
        retry_ms=config.retry_ms,
        max_clients=config.max_clients,
        max_clients_per_agent=config.max_clients_per_agent,
    )
    streams.start()
    app.extensions[EXTENSION] = Supervisor(config, registry, streams)
    errors.register(app)
    security.register(app, config, authenticate=auth.register(app, config.token, config.cors_origins))
    for blueprint in (agents.bp, stream.bp, monitor.bp, pages.bp, auth.bp):
        app.register_blueprint(blueprint)
    return app
