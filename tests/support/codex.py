"""The real codex CLI, pinned, in ``.tools/`` (ignored by git): installed with npm on first use.

Where that cannot be done (no npm, no network) the tests that need it skip with the reason, and
fail under ``CI=true``, where they must run. Modules that use the ``codex_bin`` fixture name
this module in ``pytest_plugins``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from . import ROOT
from .net import closed_port

CODEX_VERSION = "0.169.0"
TOOLS = ROOT / ".tools"
CODEX_BIN = TOOLS / "node_modules" / ".bin" / "codex"
INSTALL = ["npm", "install", "--prefix", str(TOOLS), f"@openai/codex@{CODEX_VERSION}",
           "--no-audit", "--no-fund", "--loglevel=error"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail in CI, where the tool must be there."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the real-tool tests must run)")
    pytest.skip(reason)


def installed_codex_version() -> str | None:
    manifest = TOOLS / "node_modules" / "@openai" / "codex" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    """The pinned codex CLI in ``.tools/``, installed with npm on first use."""
    if installed_codex_version() != CODEX_VERSION or not CODEX_BIN.exists():
        if shutil.which("npm") is None:
            unavailable(f"npm is not installed, so @openai/codex@{CODEX_VERSION} cannot be installed")
        try:
            done = subprocess.run(INSTALL, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            unavailable(f"`{' '.join(INSTALL)}` took more than 300 s")
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            unavailable(f"`{' '.join(INSTALL)}` failed: {tail[:300]}")
    version = subprocess.run([str(CODEX_BIN), "--version"], check=False, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    if CODEX_VERSION not in version.stdout:
        unavailable(f"{CODEX_BIN} --version says {version.stdout.strip() or version.stderr.strip()!r}")
    return CODEX_BIN


def offline_codex_env(tmp_path: Path, codex: Path) -> dict[str, str]:
    """Environment for a codex that cannot reach anything but a closed loopback port."""
    port = closed_port()
    home = tmp_path / "home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    (codex_home / "config.toml").write_text(
        f'openai_base_url = "{base_url}"\ncheck_for_update_on_startup = false\n')
    proxy = f"http://127.0.0.1:{port}"
    return {
        "PATH": f"{codex.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": str(home), "CODEX_HOME": str(codex_home),
        "OPENAI_API_KEY": "sk-test-dummy-not-a-key", "OPENAI_BASE_URL": base_url,
        "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "ALL_PROXY": proxy,
        "https_proxy": proxy, "http_proxy": proxy, "all_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "TERM": "xterm-256color",
    }


