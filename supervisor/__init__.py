"""agent-supervisor core: run command-line agents under a PTY and turn their output into events.

Data flows one way: :mod:`supervisor.process` reads the PTY, :mod:`supervisor.pipeline` turns
the bytes into events (:mod:`~supervisor.terminal` answers, :mod:`~supervisor.lines` splits,
:mod:`~supervisor.echo` marks typed input, :mod:`~supervisor.extractors` pulls facts out),
:mod:`supervisor.agent` hands them to :mod:`supervisor.eventlog`, which gives each an id, keeps
it in :mod:`~supervisor.history` and publishes it on its own :mod:`~supervisor.bus`. Nothing
here imports Flask or ``api/``.
"""
from __future__ import annotations

__version__ = "0.1.0"
