"""agent-supervisor core: run command-line agents under a PTY and turn their output into events.

Data flows one way: :mod:`supervisor.process` reads the PTY, :mod:`supervisor.lines` turns bytes
into lines, :mod:`supervisor.extractors` pulls facts out of them, :mod:`supervisor.agent` wraps
each one in an :class:`~supervisor.events.Event`, and :mod:`supervisor.eventlog` stores it in
history and publishes it on the :mod:`supervisor.signals` bus. Nothing here imports Flask.
"""
from __future__ import annotations

__version__ = "0.1.0"
