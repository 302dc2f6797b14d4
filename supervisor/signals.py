"""The observer bus: every signal the core sends, declared in one place.

Each signal is sent with the agent's name as sender and one keyword argument, ``event`` (an
:class:`~supervisor.events.Event` already stored in history and carrying its final id). Receivers
are called in the publishing greenlet, so they must be quick and must not block; a receiver that
raises is logged and skipped (see :func:`send_safely`), so it cannot break an agent's pipeline or
the receivers after it.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from blinker import Namespace, Signal

from . import events

log = logging.getLogger(__name__)

_signals = Namespace()

log_line = _signals.signal(
    events.LOG, doc="A line (or partial line) of output. sender: agent name; event: the log event."
)
extraction = _signals.signal(
    events.EXTRACTION, doc="An extractor matched a line. sender: agent name; event: extraction."
)
state = _signals.signal(
    events.STATE, doc="An agent changed state. sender: agent name; event: the state event."
)
complete = _signals.signal(
    events.COMPLETE,
    doc="An agent is done for good (no restart follows). sender: agent name; event: complete.",
)
error = _signals.signal(
    events.ERROR, doc="Something went wrong for an agent. sender: agent name; event: error."
)
agent_added = _signals.signal(
    events.AGENT_ADDED, doc="An agent was defined. sender: agent name; event: agent_added."
)
agent_removed = _signals.signal(
    events.AGENT_REMOVED, doc="An agent was deleted. sender: agent name; event: agent_removed."
)

#: Signal by event type, for publishers and for subscribers that want everything.
BY_TYPE: dict[str, Signal] = {
    events.LOG: log_line,
    events.EXTRACTION: extraction,
    events.STATE: state,
    events.COMPLETE: complete,
    events.ERROR: error,
    events.AGENT_ADDED: agent_added,
    events.AGENT_REMOVED: agent_removed,
}


def send_safely(signal: Signal, sender: str, event: events.Event) -> None:
    """Call every receiver of ``signal`` for ``sender``; one that raises is logged, not propagated."""
    if not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, event=event)
        except Exception:  # noqa: BLE001 - a broken listener must not break the agent
            log.exception("receiver %r of signal %r raised; skipped", receiver, getattr(signal, "name", signal))


@contextmanager
def subscribed(receiver: Callable[..., Any], types: tuple[str, ...] = events.EVENT_TYPES) -> Iterator[None]:
    """Connect ``receiver`` to the signals for ``types`` for the duration of a ``with`` block.

    The receiver is disconnected in a ``finally``, so a subscriber that fails cannot leak.
    """
    for name in types:
        BY_TYPE[name].connect(receiver, weak=False)
    try:
        yield
    finally:
        for name in types:
            BY_TYPE[name].disconnect(receiver)
