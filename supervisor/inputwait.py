"""Whether a run waits for input: the moment a person is needed, as coding-agent tools show it.

The sign is the one a person reads on a terminal: a prompt (text without its newline, such as
``Continue? [y/N] ``) and then nothing more for ``input_wait_s`` (default 2 s). The agent then
sets the flag and emits a ``waiting_input`` event (``{"waiting_input": true, "prompt": ...}``);
the next output, the next input or the end of the run clears it with another one
(``{"waiting_input": false, "reason": "output" | "input" | "exit"}``).

It is a heuristic, like any reading of a screen: a program that prints ``Working...`` without a
newline and then computes quietly for a while looks the same as one at a prompt. A spinner never
does (it keeps printing), nor does a program that prints whole lines.

This module keeps the facts, with a clock handed in (pure); the agent's timer asks it when the
quiet time is over (:meth:`InputWait.due_in`) and the pipeline what is pending.
"""
from __future__ import annotations


class InputWait:
    """One agent's waiting-for-input flag and the quiet time that leads to it."""

    __slots__ = ("last_output", "prompt", "wait_s", "waiting")

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.last_output = 0.0  # monotonic time of the run's last output
        self.waiting = False
        self.prompt: str | None = None  # the pending line (plain text) while waiting

    def reset(self) -> None:
        """A new run: nothing pending, nothing waited for."""
        self.waiting, self.prompt, self.last_output = False, None, 0.0

    def output(self, now: float) -> bool:
        """The run printed something at ``now``; True when that ended a wait (say so)."""
        self.last_output = now
        return self.clear()

    def due_in(self, now: float) -> float:
        """Seconds of quiet still needed before a pending prompt counts as waiting (<= 0: now)."""
        return self.last_output + self.wait_s - now

    def begin(self, prompt: str) -> None:
        """The quiet time is over with ``prompt`` pending: the run waits for input."""
        self.waiting, self.prompt = True, prompt

    def clear(self) -> bool:
        """End a wait (output, input, the end of the run); True if there was one."""
        if not self.waiting:
            return False
        self.waiting, self.prompt = False, None
        return True
