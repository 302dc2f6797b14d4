"""Reading an agent's history and following streams, with progress shown on stderr."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..client import ApiError, Client, Follower
from .render import YELLOW, Renderer, Status


def agent_path(name: str) -> str:
    return f"/api/agents/{quote(name, safe='')}/stream"


def agent_or_none(client: Client, name: str) -> dict[str, Any] | None:
    try:
        return client.agent(name)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise



def follower(client: Client, path: str, last_id: str | None, status: Status, *,
              stop_at_complete: bool = True, give_up_s: float | None = 60.0) -> Follower:
    def reconnecting(delay: float, cause: BaseException | None) -> None:
        why = "the server ended the stream" if cause is None else str(cause)
        text = f"connection lost ({why}); reconnecting in {delay:.1f}s"
        if status.tty:
            status.show(text)
        elif follower.connections and not state["noted"]:
            status.note(text)
            state["noted"] = True

    def connected(attempt: int) -> None:
        if attempt and (state["noted"] or status.tty):
            status.note("reconnected; resuming after event " + (follower.last_event_id or "0"))
        state["noted"] = False

    state = {"noted": False}
    follower = Follower(client, path, last_id, stop_at_complete=stop_at_complete,
                        give_up_s=give_up_s, on_reconnect=reconnecting, on_connect=connected)
    return follower


def history(client: Client, name: str, status: Status) -> tuple[list[dict[str, Any]], int]:
    """An agent's whole retained history through the REST endpoint, with progress.

    Returns the envelopes and the id to resume a stream after.
    """
    target = int(client.agent(name).get("last_event_id") or 0)
    events: list[dict[str, Any]] = []
    after = 0
    last = 0
    while True:
        page = client.events(name, after=after, limit=10000)
        batch = page.get("events") or []
        if page.get("reset") and page.get("missed"):
            status.note(f"{page['missed']} earlier events are no longer kept", YELLOW)
        last = max(last, int(page.get("last_event_id") or 0))
        if not batch:
            break
        events.extend(batch)
        after = int(batch[-1]["id"])
        status.show(f"reading history: {len(events):,} events (up to event {after:,} of "
                    f"{max(target, last):,})", throttle=0.1)
    status.clear()
    return events, (int(events[-1]["id"]) if events else last)


def last_lines(events: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The events from the one that holds the ``count``-th last complete line on. Only complete
    lines count (a partial line and its final version are one line; a partial line that no
    final version follows yet, a prompt, does not count but is kept); other events between them
    come along; of their settled screens only the newest: a full-screen program's screen as it
    is, not each one it has shown."""
    if count <= 0:
        return []
    complete: set[tuple[Any, Any]] = set()
    start = len(events)
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event.get("type") != "log":
            continue
        data = event.get("data") or {}
        key = (data.get("run"), data.get("line_num"))
        if data.get("partial"):
            if key in complete or len(complete) < count:
                start = index  # the earlier version of a counted line, or a prompt after them
            continue
        if key not in complete and len(complete) == count:
            break
        complete.add(key)
        start = index
    newest = next((i for i in range(len(events) - 1, -1, -1) if events[i].get("type") == "screen"), None)
    if newest is None:
        return events[start:]
    kept = [event for i, event in enumerate(events[start:], start) if event.get("type") != "screen" or i == newest]
    # A full-screen program may have printed no line since its screen settled, or none at all.
    return kept if newest >= start else [events[newest], *kept]


def print_stream(follower: Follower, renderer: Renderer, replay_until: int = 0) -> None:
    """Render a stream to its end; while the ids are below ``replay_until`` (history being
    replayed), show how far the replay got."""
    status = renderer.status
    try:
        for event in follower:
            renderer.wire(event)
            if replay_until and event.id and event.id.isdigit():
                if int(event.id) < replay_until:
                    status.show(f"replaying history: event {int(event.id):,} of "
                                f"{replay_until:,}", throttle=0.1)
                else:
                    replay_until = 0
                    status.clear()
    finally:
        renderer.finish()

