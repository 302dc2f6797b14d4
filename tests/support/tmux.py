"""tmux as an outside oracle: a program in a pane of a given size, its screen read back with
``capture-pane``.

A :class:`TmuxPane` is one pane of a tmux server of its own (``-L <unique name>``, no config
file), so tests neither see nor disturb a user's tmux: the program runs in it directly (no
shell), the window keeps its size, and the pane stays when the program exits. ``capture()`` is
``capture-pane -p`` row by row, ``capture_escapes()`` the same with ``-e`` (colours and
attributes as SGR), ``info()`` cursor, flags and size; ``type()`` and ``press()`` are
``send-keys``. :meth:`TmuxPane.close` kills the server, which ends the program (SIGHUP), and
waits until it is gone. The virtual-screen tests replay recorded bytes in one
(:class:`support.screen.ReplayPane`); the codex tests run its full screen in one.

Every wait is a condition with a deadline. tmux is a Debian package: :func:`require_tmux`
skips the test where it is missing and fails it under ``CI=true``, where the test command
installs it.
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

INSTALL_HINT = "the tmux oracle tests need tmux (apt-get install -y tmux)"

#: tmux reads the locale to decide that the pane speaks UTF-8 and how wide characters are.
TMUX_ENV = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

_names = itertools.count()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require_tmux() -> str:
    """The path of tmux; skip the test where it is missing, fail it under CI."""
    path = shutil.which("tmux")
    if path is None:
        if in_ci():
            pytest.fail(f"tmux is missing: {INSTALL_HINT}", pytrace=False)
        pytest.skip(f"tmux is missing: {INSTALL_HINT}")
    return path


class TmuxPane:
    """``argv`` in a ``cols`` x ``rows`` pane of a private tmux server, started in ``cwd`` with
    ``env`` added to this process's environment (and the locale of :data:`TMUX_ENV` unless
    ``env`` says otherwise). ``status``: keep tmux's status line (it takes the pane's last row).
    Use as a context manager, or call :meth:`close`."""

    def __init__(self, argv: list[str], cols: int = 120, rows: int = 40, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None, status: bool = True, timeout: float = 10.0) -> None:
        self.tmux = require_tmux()
        self.cols, self.rows, self.timeout = cols, rows, timeout
        self.name = f"oracle-{os.getpid()}-{next(_names)}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")} | TMUX_ENV | (env or {})
        self._socket: Path | None = None
        where = ["-c", str(cwd)] if cwd is not None else []
        # More than one word: tmux runs the program directly, with no shell.
        self._run("-f", "/dev/null", "new-session", "-d", "-s", "oracle", "-x", str(cols), "-y", str(rows),
                  *where, "--", *argv)
        try:
            self._socket = Path(self._run("display-message", "-p", "#{socket_path}").strip())
            self.server_pid = int(self._run("display-message", "-p", "#{pid}").strip())
            # The window keeps its size even if a client attaches; the pane stays when the
            # program exits.
            self._run("set-option", "-t", "oracle", "window-size", "manual")
            self._run("set-option", "-t", "oracle", "remain-on-exit", "on")
            if not status:
                self._run("set-option", "-t", "oracle", "status", "off")
        except BaseException:
            self.close()
            raise

    def _run(self, *args: str) -> str:
        result = subprocess.run([self.tmux, "-L", self.name, *args], env=self.env, capture_output=True,
                                timeout=self.timeout, stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args[:3])}... failed: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode("utf-8", errors="replace")

    # -- reading the screen ------------------------------------------------------------------

    def capture(self) -> list[str]:
        """The visible screen, one string per row, trailing spaces removed (``capture-pane -p``)."""
        return self._rows("capture-pane", "-p", "-t", "oracle")

    def capture_escapes(self) -> list[str]:
        """The same rows with their colours and attributes as SGR sequences (``-e``)."""
        return self._rows("capture-pane", "-p", "-e", "-t", "oracle")

    def _rows(self, *command: str) -> list[str]:
        height = int(self.info()["pane_height"])
        lines = self._run(*command).split("\n")[:height]
        return [line.rstrip(" ") for line in lines] + [""] * (height - len(lines))

    def info(self) -> dict[str, str]:
        """Pane title and size, cursor position and visibility, alternate screen."""
        keys = ["pane_title", "pane_width", "pane_height", "cursor_x", "cursor_y", "cursor_flag",
                "alternate_on", "pane_pid"]
        values = self._run("display-message", "-p", "-t", "oracle", "\t".join(f"#{{{k}}}" for k in keys))
        return dict(zip(keys, values.rstrip("\n").split("\t")))

    def pane_pid(self) -> int:
        return int(self.info()["pane_pid"])

    def socket_path(self) -> Path:
        assert self._socket is not None
        return self._socket

    # -- waiting -----------------------------------------------------------------------------

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

    def wait_info(self, done: Callable[[dict[str, str]], bool], what: str) -> None:
        """Poll :meth:`info` until ``done(info)``; fail after the pane's timeout."""
        deadline = time.monotonic() + self.timeout
        while not done(self.info()):
            if time.monotonic() > deadline:
                raise AssertionError(f"tmux did not show {what} within {self.timeout} s: {self.info()}")
            time.sleep(0.02)

    # -- acting ------------------------------------------------------------------------------

    def type(self, text: str) -> None:
        """Keys typed literally (no key names)."""
        self._run("send-keys", "-t", "oracle", "-l", text)

    def press(self, *keys: str) -> None:
        """Named keys: ``Enter``, ``Escape``, ``C-c``..."""
        self._run("send-keys", "-t", "oracle", *keys)

    def resize(self, cols: int, rows: int) -> None:
        """Resize the pane (its window) and wait until tmux has done it."""
        self._run("resize-window", "-t", "oracle", "-x", str(cols), "-y", str(rows))
        self.wait_info(lambda info: (info["pane_width"], info["pane_height"]) == (str(cols), str(rows)),
                       f"the size {cols}x{rows}")
        self.cols, self.rows = cols, rows

    # -- the end -----------------------------------------------------------------------------

    def __enter__(self) -> TmuxPane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the server and the program in it; wait until the server is gone; remove its
        socket (tmux leaves the file behind). Safe to call twice."""
        subprocess.run([self.tmux, "-L", self.name, "kill-server"], env=self.env, capture_output=True,
                       timeout=self.timeout, check=False)
        deadline = time.monotonic() + self.timeout
        while subprocess.run([self.tmux, "-L", self.name, "has-session"], env=self.env, capture_output=True,
                             timeout=self.timeout, check=False).returncode == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"tmux server {self.name} did not stop")
            time.sleep(0.02)
        if self._socket is not None:
            self._socket.unlink(missing_ok=True)
