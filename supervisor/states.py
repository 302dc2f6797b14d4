"""Agent states and the groups they fall into (the supervisord way: a tiny stdlib-only module).

An agent goes ``starting -> running -> stopping -> exited``; ``failed`` means its process could
not be started at all; ``backoff`` means it ended and a restart is scheduled; ``lost`` marks an
agent that was live when a previous supervisor process died, so nobody knows how it ended
(``lost -> exited`` when a stop then ends what it left running).
"""
from __future__ import annotations

import enum


class AgentState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"
    EXITED = "exited"
    FAILED = "failed"
    LOST = "lost"


#: States in which the agent has (or is about to have) a live process.
RUNNING_STATES = frozenset({AgentState.STARTING, AgentState.RUNNING, AgentState.STOPPING})

#: States in which the agent is busy: running, or waiting to run again. Deleting or re-creating
#: an agent in one of these is refused.
ACTIVE_STATES = RUNNING_STATES | {AgentState.BACKOFF}

#: States in which a new run has got as far as it goes by itself: it runs, it ended, it could not
#: start, or it waits to be restarted (``agent-supervisor restart`` waits for one of these).
SETTLED_STATES = frozenset({AgentState.RUNNING, AgentState.EXITED, AgentState.FAILED, AgentState.BACKOFF})

#: Legal transitions: every change of state goes through one ``_change_state`` that checks this.
TRANSITIONS: dict[AgentState | None, frozenset[AgentState]] = {
    None: frozenset({AgentState.STARTING, AgentState.EXITED, AgentState.FAILED, AgentState.LOST}),
    AgentState.STARTING: frozenset({AgentState.RUNNING, AgentState.FAILED, AgentState.LOST}),
    AgentState.RUNNING: frozenset({AgentState.STOPPING, AgentState.EXITED, AgentState.LOST}),
    AgentState.STOPPING: frozenset({AgentState.EXITED, AgentState.LOST}),
    # EXITED -> BACKOFF: the run ended by itself and the restart policy wants another.
    AgentState.EXITED: frozenset({AgentState.STARTING, AgentState.BACKOFF}),
    # BACKOFF -> EXITED: stopped by the user while waiting to restart.
    AgentState.BACKOFF: frozenset({AgentState.STARTING, AgentState.EXITED, AgentState.LOST}),
    AgentState.FAILED: frozenset({AgentState.STARTING}),
    # LOST -> EXITED: a stop ended what the lost run had left running.
    AgentState.LOST: frozenset({AgentState.STARTING, AgentState.EXITED}),
}
