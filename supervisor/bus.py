"""The bus of one event log: a blinker signal per event type, and subscriptions to them.

Every :class:`~supervisor.eventlog.EventLog` owns one :class:`EventBus`; nothing here is a module
global, so two supervisors in one process (two apps in a test) never hear each other. Each signal
is sent with the event log as ``sender`` and one keyword argument, ``event`` (an
:class:`~supervisor.events.Event` that is already in history and carries its final id).

Receivers run in the publishing greenlet, in no defined order: they must be quick and must not
block. What happens when one raises depends on how it listens:

- through :meth:`EventBus.subscribe` (the one way the project listens), the receiver is wrapped
  in a guard that logs the exception and returns, so a broken subscriber can break neither an
  agent's pipeline nor the receivers after it;
- connected to a signal directly (``bus.signal("log").connect(...)``, blinker's
  ``connected_to()``), it gets blinker's own contract: the exception propagates up to the
  publisher, which is what a test that wants to see it needs.

Publishing goes through :meth:`blinker.Signal.send`, so blinker's ``muted()`` silences a signal.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from blinker import Signal

from . import events
from .events import Event

log = logging.getLogger(__name__)

#: A receiver: called as ``receiver(sender, event=event)``.
Receiver = Callable[..., Any]

_DOCS = {
    events.LOG: "A line (or partial line) of output. sender: the event log; event: the log event.",
    events.EXTRACTION: "An extractor matched a line. sender: the event log; event: extraction.",
    events.SCREEN: "An agent's virtual screen settled. sender: the event log; event: the screen event.",
    events.STATE: "An agent changed state. sender: the event log; event: the state event.",
    events.COMPLETE: "An agent is done for good (no restart follows). sender: the event log; event: complete.",
    events.ERROR: "Something went wrong for an agent. sender: the event log; event: error.",
    events.AGENT_ADDED: "An agent was defined. sender: the event log; event: agent_added.",
    events.AGENT_REMOVED: "An agent was deleted. sender: the event log; event: agent_removed.",
    events.WAITING_INPUT: "A run started or stopped waiting at a prompt. sender: the event log; event: waiting_input.",
}


class Subscription:
    """A receiver connected to some of a bus's signals; :meth:`close` (or leaving a ``with``
    block) disconnects it. Closing twice is harmless."""

    __slots__ = ("_connected", "receiver")

    def __init__(self, receiver: Receiver, connected: list[tuple[Signal, Receiver]]) -> None:
        self.receiver = receiver
        self._connected = connected

    @property
    def active(self) -> bool:
        return bool(self._connected)

    def close(self) -> None:
        connected, self._connected = self._connected, []
        for signal, guard in connected:
            signal.disconnect(guard)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class EventBus:
    """One signal per event type (see :data:`~supervisor.events.EVENT_TYPES`), sent with
    ``sender`` (the event log that owns the bus). Not safe to share between threads."""

    __slots__ = ("_signals", "sender")

    def __init__(self, sender: object) -> None:
        self.sender = sender
        self._signals = {kind: Signal(doc) for kind, doc in _DOCS.items()}

    def signal(self, kind: str) -> Signal:
        """The signal of events of type ``kind``; raises ``KeyError`` for an unknown type."""
        return self._signals[kind]

    def publish(self, event: Event) -> None:
        """Send ``event`` on its type's signal. Cheap when nobody listens."""
        signal = self._signals[event.type]
        if signal.receivers:
            signal.send(self.sender, event=event)

    def subscribe(self, receiver: Receiver, types: Iterable[str] = events.EVENT_TYPES) -> Subscription:
        """Call ``receiver(sender, event=event)`` for every event of the given types until the
        returned :class:`Subscription` is closed. An exception from ``receiver`` is logged and
        goes no further."""

        def guarded(sender: object, event: Event) -> None:
            try:
                receiver(sender, event=event)
            except Exception:
                log.exception("receiver %r of %s events raised; skipped", receiver, event.type)

        connected = []
        for kind in dict.fromkeys(types):
            signal = self._signals[kind]
            signal.connect(guarded, weak=False)
            connected.append((signal, guarded))
        return Subscription(receiver, connected)

    def receiver_count(self) -> int:
        """Receivers connected to any signal of this bus (the leak tests count them)."""
        return sum(len(signal.receivers) for signal in self._signals.values())
