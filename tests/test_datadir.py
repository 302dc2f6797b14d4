"""supervisor.datadir: the data directory is its user's alone, one live server at a time uses
it, and a full disk is no reason not to start.

Against a real server whose home is an ordinary 0755 folder (as Debian makes them): everything
``serve`` creates is closed to other users, which another user (``nobody``, in a child process
started as root) finds by trying to read every file; an existing data dir that is open to others
is said at start; and the agents still get the user's own umask. The lock is exclusive, names
its holder, and dies with the server, not with its agents.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor import datadir
from supervisor.exceptions import DataDirLocked

from support.processes import Server, python_agent
from support.waiting import wait_for

NOBODY = 65534
SECRET_ENV = "sk-live-0123456789abcdef"
TYPED = "hunter2-typed-password"


@pytest.fixture
def home() -> Iterator[Path]:
    """A home folder other users may enter (0755), outside pytest's own 0700 temporary tree,
    so that only the data dir's own permissions stand between them and its files."""
    path = Path(tempfile.mkdtemp(prefix="as-home-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def start(home: Path, data_dir: Path) -> Server:
    return Server(data_dir, [], {"HOME": str(home), "XDG_STATE_HOME": ""}).start()


def as_nobody_readable(paths: list[Path]) -> list[str]:
    """The paths among ``paths`` that user ``nobody`` can open (files) or list (folders)."""
    code = (
        "import json, os, sys\n"
        "ok = []\n"
        "for p in json.load(sys.stdin):\n"
        "    try:\n"
        "        os.listdir(p) if os.path.isdir(p) else open(p, 'rb').close()\n"
        "        ok.append(p)\n"
        "    except OSError:\n"
        "        pass\n"
        "print(json.dumps(ok))\n"
    )
    done = subprocess.run(["/usr/bin/python3", "-c", code], input=json.dumps([str(p) for p in paths]),
                          capture_output=True, text=True, timeout=30, check=True,
                          user=NOBODY, group=NOBODY, extra_groups=[], cwd="/")
    readable: list[str] = json.loads(done.stdout)
    return readable


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="trying as another user needs root (CI runs as root)")
def test_another_user_can_read_nothing_in_the_data_dir(home: Path) -> None:
    """An agent with an API key in its environment that is typed a password: afterwards every
    folder the server made is 0700 and every file 0600, and user nobody can open none of them."""
    data_dir = home / "data"
    server = start(home, data_dir)
    try:
        server.create(name="keys", command=python_agent("import sys\nprint('ready')\nprint(sys.stdin.readline())"),
                      env={"OPENAI_API_KEY": SECRET_ENV})
        with server.stream("/api/agents/keys/stream") as stream:
            stream.until(lambda e: "ready" in e.data)
            assert server.request("POST", "/api/agents/keys/input", {"data": TYPED + "\n"}).status == 204
            stream.until(lambda e: e.event == "complete")
        paths = sorted(data_dir.rglob("*"))
        files = [p for p in paths if p.is_file()]
        assert any(SECRET_ENV in p.read_text(errors="replace") for p in files)  # the secrets are there
        assert any(TYPED in p.read_text(errors="replace") for p in files)
        for path in [data_dir, *paths]:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))
        assert as_nobody_readable([data_dir, *paths]) == []
        assert as_nobody_readable([home]) == [str(home)]  # the control: nobody does read what it may
    finally:
        server.stop()


def test_an_existing_data_dir_open_to_others_is_warned_about(home: Path) -> None:
    """A data dir made 0755 before (by an older version) is left as it is, and the server says
    at start who can read it and the command that closes it."""
    data_dir = home / "state"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    server = start(home, data_dir)
    try:
        warning = wait_for(lambda: [line for line in server.log_path.read_text().splitlines()
                                    if "WARNING" in line and "open to other users" in line], 5)
        assert "(mode 0755)" in warning[0] and f"chmod 700 '{data_dir}'" in warning[0]
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755
        assert stat.S_IMODE((data_dir / "server.json").stat().st_mode) == 0o600
    finally:
        server.stop()
    closed = home / "closed"
    closed.mkdir(mode=0o700)
    assert datadir.shared_warning(closed) is None
    closed.chmod(0o750)
    assert "mode 0750" in (datadir.shared_warning(closed) or "")


def test_agents_keep_the_users_umask(home: Path) -> None:
    """The server's private umask is its own: an agent starts with the umask serve was started
    with, so a build's output is as readable as if the user had run it in a shell."""
    mine = os.umask(0o022)
    try:
        server = start(home, home / "data")
    finally:
        os.umask(mine)
    try:
        server.create(name="umask", command=python_agent(
            "import os\nm = os.umask(0)\nprint(f'umask {m:03o}')"))
        with server.stream("/api/agents/umask/stream") as stream:
            events = stream.until(lambda e: e.event == "complete")
        assert any("umask 022" in e.data for e in events), [e.data for e in events]
    finally:
        server.stop()


def test_private_umask_returns_the_previous_one() -> None:
    """private_umask sets 077 and hands back what it replaced."""
    before = os.umask(0o027)
    try:
        assert datadir.private_umask() == 0o027
        assert os.umask(0o027) == datadir.PRIVATE_UMASK
    finally:
        os.umask(before)


def test_a_second_lock_names_the_holder_and_a_release_frees_it(tmp_path: Path) -> None:
    """The lock is exclusive; the refusal names the holder's pid; released, it can be taken."""
    first = datadir.lock(tmp_path)
    with pytest.raises(DataDirLocked, match=f"pid {os.getpid()}"):
        datadir.lock(tmp_path)
    first.release()
    datadir.lock(tmp_path).release()


@pytest.mark.slow
def test_a_second_server_on_the_same_data_dir_refuses_to_start(make_server: Callable[..., Server],
                                                               tmp_path: Path) -> None:
    """Two live servers on one data directory would end each other's runs: the second one
    stops at once, naming the first's pid and URL, and the first's agent runs on."""
    first = make_server()
    first.create(name="keeps", command=["sleep", "30"])
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", "serve", "--port", "0", "--data-dir", str(first.data_dir)],
        capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert f"pid {first.process.pid if first.process else 0}" in result.stderr and first.url in result.stderr
    assert first.get("/api/agents/keeps")["state"] == "running"


def test_the_lock_dies_with_the_server_not_with_its_agents(make_server: Callable[..., Server]) -> None:
    """A server killed with SIGKILL leaves its agents to die of the hang-up, and the lock to
    the kernel: a new server starts on the same directory at once (agents do not inherit it)."""
    first = make_server()
    first.create(name="orphan", command=["sh", "-c", "trap '' HUP; exec sleep 30"])
    first.wait_state("orphan", "running")
    pid = first.get("/api/agents/orphan")["pid"]
    first.stop(signal.SIGKILL)
    try:
        second = make_server(data_dir=first.data_dir)
        assert second.get("/api/agents/orphan")["state"] == "lost"
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
