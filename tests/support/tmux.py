"""tmux as an outside oracle: a program run in a detached session of a given size, its screen
read back with ``capture-pane -p``.

Each :class:`TmuxSession` has a tmux server of its own (``-S`` socket in a temporary
directory), so tests neither see nor disturb a user's tmux; :meth:`TmuxSession.close` kills
that server, which ends the program (SIGHUP) unless it left its session.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def unavailable_reason() -> str | None:
    return None if shutil.which("tmux") else "tmux is not installed (Debian package tmux)"


class TmuxSession:
    """``argv`` in a ``cols`` x ``rows`` tmux window, started in ``cwd`` with ``env`` added."""

    def __init__(self, socket_dir: Path, argv: list[str], *, cwd: Path, env: dict[str, str],
                 cols: int = 120, rows: int = 40) -> None:
        socket_dir.mkdir(parents=True, exist_ok=True)
        self.socket = socket_dir / "tmux.sock"
        self._env = {**os.environ, **env}
        self._env.pop("TMUX", None)
        self._run("new-session", "-d", "-s", "oracle", "-x", str(cols), "-y", str(rows), "-c", str(cwd),
                  "--", *argv)  # more than one word: tmux runs it directly, with no shell
        # The window keeps its size even if a client attaches; and stays when the program exits.
        self._run("set-option", "-t", "oracle", "window-size", "manual")
        self._run("set-option", "-t", "oracle", "remain-on-exit", "on")

    def _run(self, *args: str, timeout: float = 10.0) -> str:
        done = subprocess.run(["tmux", "-S", str(self.socket), *args], env=self._env, capture_output=True,
                              text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args[:2])} failed: {done.stderr.strip()}")
        return done.stdout

    def capture(self) -> list[str]:
        """The visible screen, one string per row, trailing spaces removed (as tmux prints it)."""
        return self._run("capture-pane", "-p", "-t", "oracle").split("\n")[:-1]

    def type(self, text: str) -> None:
        """Keys typed literally (no key names)."""
        self._run("send-keys", "-t", "oracle", "-l", text)

    def press(self, *keys: str) -> None:
        """Named keys: ``Enter``, ``Escape``, ``C-c``..."""
        self._run("send-keys", "-t", "oracle", *keys)

    def pane_pid(self) -> int:
        return int(self._run("display-message", "-p", "-t", "oracle", "#{pane_pid}").strip())

    def wait_screen(self, predicate: Callable[[list[str]], bool], timeout: float, what: str) -> list[str]:
        """Poll the screen until ``predicate(rows)`` holds; fail with the screen after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.capture()
            if predicate(rows):
                return rows
            if time.monotonic() > deadline:
                screen = "\n".join(rows)
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; tmux shows:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        try:
            self._run("kill-server")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # already gone
