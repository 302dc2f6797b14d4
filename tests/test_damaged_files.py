"""Damaged files are reported, and the rest is served (issue 12): one test per kind of damage.

Each builds a data directory with two agents whose events interleave (so ids are not dense in
either: a count from ids alone would be wrong), damages one file, and starts a registry on it:
the start succeeds, one warning names the damaged file, everything readable is served, and a
resumer across the hole gets ``reset`` with exactly the number of events that are missing. A
second start counts the same and warns no more (the loss is recorded in the manifest). The
last test does all of it to one data directory under a real server, over SSE.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from supervisor.config import Config, load_config
from supervisor.eventlog import EventLog
from supervisor.registry import Registry
from supervisor.spec import AgentSpec
from supervisor.store import AgentRecord, AgentStore

A_EVENTS = 25_000  # three segments of agent "a": 10,000 + 10,000 + 5,000


def _config(tmp_path: Path) -> Config:
    return load_config(environ={"HOME": str(tmp_path)}, data_dir=str(tmp_path / "data"))


def _populate(data: Path) -> dict[str, list[int]]:
    """Agents ``a`` (25,000 events) and ``b`` (one event after every ten of a's), closed
    cleanly; returns each one's ids."""
    log = EventLog(data)
    ids: dict[str, list[int]] = {"a": [], "b": []}
    for n in range(A_EVENTS):
        ids["a"].append(log.append("a", "log", {"line": f"a {n}", "line_num": n + 1, "run": 1}).id)
        if n % 10 == 9:
            ids["b"].append(log.append("b", "log", {"line": f"b {n}", "line_num": n + 1, "run": 1}).id)
    log.close()
    store = AgentStore(data)
    for name in ids:
        store.save(AgentRecord(spec=AgentSpec(name=name, command=["true"]), state="exited", run=1))
    return ids


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, dict[str, list[int]]]:
    return tmp_path / "data", _populate(tmp_path / "data")


def _segment(data: Path, number: int, agent: str = "a") -> Path:
    return data / "agents" / agent / f"events.{number:06d}.jsonl"


def _start(tmp_path: Path, caplog: pytest.LogCaptureFixture, damaged: Path) -> tuple[Registry, list[str]]:
    """A registry on the damaged data directory, and the warnings that named ``damaged``."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        registry = Registry(_config(tmp_path))
    named = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and str(damaged) in r.getMessage()]
    return registry, named


def _check(tmp_path: Path, caplog: pytest.LogCaptureFixture, damaged: Path, after: int, missing: int,
           expected: list[int]) -> None:
    """Twice: one warning naming ``damaged`` the first time only, the exact reset, the rest."""
    for start in (1, 2):
        registry, named = _start(tmp_path, caplog, damaged)
        try:
            assert len(named) == (1 if start == 1 else 0), named
            replay = registry.eventlog.read_after(after, "a")
            assert replay.reset and replay.missed == missing, (start, replay.missed, missing)
            assert [e.id for e in replay.events] == expected
            everything = registry.eventlog.read_after(after)  # the all-agents stream says the same
            assert everything.missed == missing
        finally:
            registry.shutdown()


def test_a_deleted_segment(tmp_path: Path, data: tuple[Path, dict[str, list[int]]],
                           caplog: pytest.LogCaptureFixture) -> None:
    """A segment in the middle is gone: its 10,000 events are counted, the others served."""
    folder, ids = data
    _segment(folder, 2).unlink()
    a = ids["a"]
    _check(tmp_path, caplog, _segment(folder, 2), a[100], 10_000, a[101:10_000] + a[20_000:])


def test_a_segment_cut_in_the_middle(tmp_path: Path, data: tuple[Path, dict[str, list[int]]],
                                     caplog: pytest.LogCaptureFixture) -> None:
    """A segment truncated in the middle of a line: the lines before the cut are served, the
    rest of it is an exact count (the manifest knows it held 10,000)."""
    folder, ids = data
    path = _segment(folder, 1)
    raw = path.read_bytes()
    cut = raw.index(b"\n", len(raw) // 3) + 17  # 17 bytes into a line
    path.write_bytes(raw[:cut])
    kept = raw[:cut].count(b"\n")
    a = ids["a"]
    _check(tmp_path, caplog, path, a[10], 10_000 - kept, a[11:kept] + a[10_000:])


def test_garbage_lines_in_a_segment(tmp_path: Path, data: tuple[Path, dict[str, list[int]]],
                                    caplog: pytest.LogCaptureFixture) -> None:
    """Three lines overwritten with garbage (and one with an id that goes backwards): four
    events missing, the rest of the file served."""
    folder, ids = data
    path = _segment(folder, 1)
    lines = path.read_bytes().split(b"\n")
    for n in (500, 501, 502):
        lines[n] = b"\x00garbage \xff" + b"#" * 30
    lines[4000] = lines[10]  # a valid envelope, out of place
    path.write_bytes(b"\n".join(lines))
    a = ids["a"]
    expected = [i for n, i in enumerate(a) if n > 100 and n not in (500, 501, 502, 4000)]
    _check(tmp_path, caplog, path, a[100], 4, expected)


def test_a_bad_manifest(tmp_path: Path, data: tuple[Path, dict[str, list[int]]],
                        caplog: pytest.LogCaptureFixture) -> None:
    """An unreadable manifest.json: named in a warning, rebuilt from the segments, nothing
    readable lost (what it alone knew of losses cannot be known)."""
    folder, ids = data
    manifest = folder / "agents" / "a" / "manifest.json"
    manifest.write_text('{"version": 1, "segments": [{"number": "one"}]')
    registry, named = _start(tmp_path, caplog, manifest)
    try:
        assert len(named) == 1
        assert [e.id for e in registry.eventlog.read_after(0, "a").events] == ids["a"]
        assert json.loads(manifest.read_text())["version"] == 1, "written again, whole"
    finally:
        registry.shutdown()


def test_a_bad_legacy_forgotten_file(tmp_path: Path, data: tuple[Path, dict[str, list[int]]],
                                     caplog: pytest.LogCaptureFixture) -> None:
    """A data directory from before the manifest, with a damaged forgotten.json: one warning
    naming it, every event served."""
    folder, ids = data
    (folder / "agents" / "a" / "manifest.json").unlink()
    forgotten = folder / "agents" / "a" / "forgotten.json"
    forgotten.write_text("[[1, 2")
    registry, named = _start(tmp_path, caplog, forgotten)
    try:
        assert len(named) == 1
        assert [e.id for e in registry.eventlog.read_after(0, "a").events] == ids["a"]
    finally:
        registry.shutdown()


def test_a_bad_agent_json(tmp_path: Path, data: tuple[Path, dict[str, list[int]]],
                          caplog: pytest.LogCaptureFixture) -> None:
    """agent.json is not JSON: the agent is listed as lost with the reason, and its history is
    served."""
    folder, ids = data
    record = folder / "agents" / "b" / "agent.json"
    record.write_text("{half a rec")
    registry, named = _start(tmp_path, caplog, record)
    try:
        assert len(named) == 1
        agent = registry.get("b")
        assert agent.state == "lost" and "cannot be read" in agent.reason
        assert [e.id for e in registry.eventlog.read_after(0, "b").events] == ids["b"]
    finally:
        registry.shutdown()


@pytest.mark.parametrize("where", ["segment", "agent.json", "manifest.json", "output.log", "ids.json"])
def test_a_folder_where_a_file_should_be(tmp_path: Path, data: tuple[Path, dict[str, list[int]]],
                                         caplog: pytest.LogCaptureFixture, where: str) -> None:
    """A directory in place of a file: the server starts, names it, serves the rest; an agent
    whose output.log is a folder still runs (its output's failure is one storage episode)."""
    folder, ids = data
    path = {"segment": _segment(folder, 4), "agent.json": folder / "agents" / "b" / "agent.json",
            "manifest.json": folder / "agents" / "b" / "manifest.json",
            "output.log": folder / "agents" / "b" / "output.log", "ids.json": folder / "ids.json"}[where]
    path.unlink(missing_ok=True)
    path.mkdir()
    registry, named = _start(tmp_path, caplog, path)
    try:
        assert len(named) == (0 if where == "output.log" else 1), named
        assert [e.id for e in registry.eventlog.read_after(0, "a").events] == ids["a"]
        assert [e.id for e in registry.eventlog.read_after(0, "b").events] == ids["b"]
        if where == "agent.json":
            assert registry.get("b").state == "lost"
        else:
            agent = registry.create({"name": "b", "command": ["echo", "runs"]})
            assert agent.wait(10) and agent.state == "exited"
            assert "complete" in [e.type for e in registry.eventlog.read_after(ids["b"][-1], "b").events]
            if where == "output.log":
                assert registry.storage.episodes_total == 1
    finally:
        registry.shutdown()


def test_a_real_server_starts_on_a_damaged_data_dir(tmp_path: Path, data: tuple[Path, dict[str, list[int]]],
                                                    make_server: object) -> None:
    """All of it at once under a real server: it starts, logs one warning per damaged file,
    lists both agents, and a stream resumed across the holes gets event: reset with the
    exact missing count, then what is left."""
    folder, ids = data
    _segment(folder, 2).unlink()
    lines = _segment(folder, 1).read_bytes().split(b"\n")
    lines[50] = b"not an event"
    _segment(folder, 1).write_bytes(b"\n".join(lines))
    (folder / "agents" / "b" / "agent.json").write_text("[")
    server = make_server(data_dir=folder)  # type: ignore[operator]
    log = server.log_path.read_text()
    for damaged in (_segment(folder, 1), _segment(folder, 2), folder / "agents" / "b" / "agent.json"):
        assert log.count(str(damaged)) == 1, damaged
    assert {a["name"]: a["state"] for a in server.get("/api/agents")["agents"]} == {"a": "exited", "b": "lost"}
    a = ids["a"]
    with server.stream("/api/agents/a/stream", headers={"Last-Event-ID": str(a[10])}) as stream:
        events = stream.until(lambda e: e.id == str(a[-1]), timeout=30)
    reset = [e.json() for e in events if e.event == "reset"]
    assert reset == [{"missed": 10_001, "first_available": a[11]}]
    assert [int(e.id) for e in events if e.id] == [i for n, i in enumerate(a) if n > 10 and n != 50
                                                  and not 10_000 <= n < 20_000]
