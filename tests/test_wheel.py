"""A wheel that works: built from the repository's tracked files, installed (not editable) into
a fresh virtual environment, it serves the dashboard, the SSE test page and ``serve --demo``.

Offline: the wheel is built with this environment's setuptools (no build isolation, no index)
and installed with ``--no-index --no-deps``; the fresh environment borrows the dependencies
from this one through a ``.pth`` line (a path entry, so the editable install here stays out of
it), and the test checks that the wheel declares every one of them. The server runs from a
folder outside the repository, so nothing can come from the checkout.
"""
from __future__ import annotations

import os
import select
import shutil
import site
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from support import ROOT
from support.net import http
from support.waiting import wait_for

pytestmark = pytest.mark.slow

PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def run(*cmd: str, cwd: Path, timeout: float = 240) -> str:
    result = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **PIP_ENV})
    assert result.returncode == 0, f"{cmd}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def tracked_copy(dest: Path) -> Path:
    """The repository as a clean clone has it: its tracked files only."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    for name in listed.decode().split("\0"):
        if name and (ROOT / name).is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    return dest


def test_the_wheel_serves_the_dashboard_the_test_page_and_the_demo(tmp_path: Path) -> None:
    """pip install of the wheel into a fresh venv: /, its scripts, /test_sse.html and the demo
    agent all come from the installed package."""
    source = tracked_copy(tmp_path / "src")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", str(tmp_path / "dist"), str(source), cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("agent_supervisor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert {"api/web/index.html", "api/web/app.js", "api/web/style.css", "api/page/test_sse.html",
            "supervisor/demo_agent.py", "supervisor/redis/lua/append.lua"} <= names
    assert not any(n.startswith(("tests/", "scripts/", "static/")) for n in names)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=tmp_path)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps", str(wheel),
        cwd=tmp_path)
    purelib = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    (Path(purelib) / "_borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # Every dependency the wheel declares is there (borrowed), and the package is the wheel's.
    check = ("import importlib.metadata as md, re, api.pages, supervisor\n"
             "reqs = [r for r in md.requires('agent-supervisor') if 'extra ==' not in r]\n"
             "for r in reqs: md.version(re.split(r'[<>=!~ ;\\[]', r)[0])\n"
             "print(api.pages.STATIC_DIR); print(supervisor.__file__)\n")
    static_dir, package = run(str(python), "-c", check, cwd=tmp_path).split()
    assert static_dir.startswith(str(venv)) and package.startswith(str(venv))
    assert "Requires-Dist: flask" in metadata and "Requires-Dist: gevent" in metadata

    server = subprocess.Popen(
        [str(venv / "bin" / "agent-supervisor"), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
         "--demo", "--token", "wheel-test-token-0123456789"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = _serving_url(server)
        page = http(url, "GET", "/")
        assert page.status == 200 and b'<script type="module" src="/static/app.js">' in page.body
        script = http(url, "GET", "/static/app.js")
        assert script.status == 200 and b"StreamClient" in script.body
        test_page = http(url, "GET", "/test_sse.html")
        assert test_page.status == 200 and b"test_sse.js" in test_page.body
        auth = {"Authorization": "Bearer wheel-test-token-0123456789"}

        def demo_lines() -> bool:
            events = http(url, "GET", "/api/agents/demo/events?limit=10000", headers=auth).json()["events"]
            return any(e["type"] == "log" and "run the test suite" in e["data"].get("plain", e["data"]["line"])
                       for e in events)

        wait_for(demo_lines, 30, 0.1, "the demo agent's output")
        assert http(url, "GET", "/api/agents/demo", headers=auth).json()["command"][1:] == [
            "-u", "-m", "supervisor.demo_agent"]
    finally:
        server.terminate()
        server.wait(30)
        if server.stdout:
            server.stdout.close()


def _serving_url(server: subprocess.Popen[bytes], timeout: float = 30) -> str:
    assert server.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline and server.poll() is None:
        ready, _, _ = select.select([server.stdout], [], [], 0.1)
        if ready:
            line = server.stdout.readline()
            seen += line
            if line.startswith(b"agent-supervisor: serving on"):
                return line.decode().split("serving on", 1)[1].strip()
    raise AssertionError(f"the installed server did not start: {seen.decode()[-2000:]}")
