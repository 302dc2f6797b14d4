"""The real codex CLI set up to talk to :class:`FakeResponses` and to nothing else.

codex 0.169.0 is configured through a temporary ``$CODEX_HOME/config.toml`` (see
:func:`config_toml`): the stand-in as a custom model provider (no login: the key comes from an
environment variable), and every start-up fetch that a setting can turn off turned off:

======================================  ====================================================
setting                                 what it stops (seen through the proxy trap)
======================================  ====================================================
``check_for_update_on_startup = false`` the release check (``api.github.com``, npm registry)
``[analytics] enabled = false``         OTLP metrics to ``ab.chatgpt.com``
``[features] plugins = false``          the plugin marketplace sync (``github.com``,
                                        ``api.github.com``, ``chatgpt.com``)
``[features] daemon_auto_start``        (full screen) ``false`` runs the app server inside
                                        codex; ``true`` (codex's default) starts
                                        ``codex app-server --managed-daemon`` and its updater
``[projects."DIR"] trust_level``        the "do you trust this directory" question
======================================  ====================================================

One fetch has no setting: the full screen's ``raw.githubusercontent.com`` announcement tip
(:data:`UNSTOPPABLE_STRAYS`). Every proxy variable points at the stand-in, which refuses and
records whatever comes that way, and, where a network namespace can be had (root), codex runs in
one with only loopback (:class:`LoopbackNetns`), so a direct connection cannot leave either.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.fake_responses import FakeResponses
from support.loopback_netns import LoopbackNetns

#: Start-up fetches that no 0.169.0 setting stops; refused, never reached.
UNSTOPPABLE_STRAYS = {"tui": {"CONNECT raw.githubusercontent.com:443"}, "exec": set()}

API_KEY_VARIABLE = "FAKE_RESPONSES_API_KEY"


def config_toml(fake: FakeResponses, workdir: Path, daemon: bool = False, trusted: bool = True,
                signed_in: bool = True) -> str:
    """The home's config; without ``signed_in`` no provider is set, so codex asks the user to sign
    in to OpenAI (its first screen for a new user)."""
    return (
        "check_for_update_on_startup = false\n"
        + (fake.provider_toml(env_key=API_KEY_VARIABLE) if signed_in else "")
        + "\n[analytics]\nenabled = false\n"
        + f"\n[features]\nplugins = false\ndaemon_auto_start = {'true' if daemon else 'false'}\n"
        + (f'\n[projects."{workdir}"]\ntrust_level = "trusted"\n' if trusted else "")
    )


@dataclass
class OfflineCodex:
    """A temporary home, config and environment for the codex at ``codex``."""

    codex: Path
    fake: FakeResponses
    root: Path  # a fresh directory for the homes and the work directory
    netns: LoopbackNetns | None = None
    daemon: bool = False
    trusted: bool = True  # the work directory, so that codex does not ask
    signed_in: bool = True  # the stand-in as the provider, with its key; else codex's sign-in menu

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.codex_home = self.home / ".codex"
        self.workdir = self.root / "work"
        self.codex_home.mkdir(parents=True)
        self.workdir.mkdir()
        (self.codex_home / "config.toml").write_text(config_toml(self.fake, self.workdir, self.daemon, self.trusted,
                                                                     self.signed_in))

    @property
    def env(self) -> dict[str, str]:
        proxy = self.fake.proxy_url
        proxies = {name: proxy for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")}
        return {
            "PATH": f"{self.codex.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "HOME": str(self.home), "CODEX_HOME": str(self.codex_home),
            API_KEY_VARIABLE: self.fake.api_key,
            **proxies, **{name.lower(): value for name, value in proxies.items()},
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "TERM": "xterm-256color",
        }

    def argv(self, *args: str) -> list[str]:
        """The command line of ``codex ARGS``, inside the namespace when there is one."""
        argv = [str(self.codex), *args]
        return self.netns.command(argv) if self.netns else argv

    def strays_beyond(self, mode: str) -> list[str]:
        """What codex tried to reach through the proxy besides what no setting stops."""
        return [stray for stray in self.fake.strays if stray not in UNSTOPPABLE_STRAYS[mode]]

    def daemons(self) -> dict[int, str]:
        """Live processes run from this home's packages (the app-server daemon and its
        updater), which leave codex's session and outlive it: pid -> command line."""
        packages = str(self.codex_home / "packages")
        found: dict[int, str] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if argv and argv[0].decode(errors="replace").startswith(packages) and state != "Z":
                found[int(entry)] = " ".join(a.decode(errors="replace") for a in argv if a)
        return found

    def stop_daemons(self, timeout: float = 20.0) -> None:
        """``codex app-server daemon stop``, then SIGTERM to what it leaves (its updater loop);
        returns once none is left, raises AssertionError after ``timeout``."""
        if not self.daemons():
            return
        deadline = time.monotonic() + timeout
        subprocess.run(self.argv("app-server", "daemon", "stop"), env={**os.environ, **self.env},
                       cwd=self.workdir, capture_output=True, timeout=timeout, check=False,
                       stdin=subprocess.DEVNULL)
        for pid in self.daemons():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        while left := self.daemons():
            if time.monotonic() > deadline:
                raise AssertionError(f"codex daemons still running after {timeout} s: {left}")
            time.sleep(0.05)
