"""The registry: the rules across agents, and what is kept of them between supervisors.

In-process, with real processes under a PTY (``gwait`` lets the hub run while waiting).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from supervisor import events
from supervisor.config import Config, load_config
from supervisor.containment.procfs import Identity
from supervisor.containment.record import RunRecord
from supervisor.containment.usage import Figures
from supervisor.exceptions import AgentNotFound, AgentRunning, DataDirError, InvalidName, InvalidRequest, TooManyAgents
from supervisor.registry import Registry
from supervisor.spec import AgentSpec
from supervisor.store import AgentRecord, AgentStore, Processes

from support.agents import history, lines, run_to_end
from support.waiting import gwait


def test_same_name_runs_again_and_continues_history(registry: Registry) -> None:
    """Re-creating an ended agent starts run 2 on the same history; an active one is refused."""
    run_to_end(registry, name="again", command=["echo", "one"])
    assert registry.create({"name": "again", "command": ["sh", "-c", "echo two; sleep 30"]}).run == 2
    with pytest.raises(AgentRunning):
        registry.create({"name": "again", "command": ["true"]})
    gwait(lambda: "two" in lines(registry, "again"), 5)
    assert [(e.data["run"], e.data["line_num"], e.data["line"]) for e in history(registry, "again", "log")] == [
        (1, 1, "one"), (2, 1, "two")]
    with pytest.raises(AgentRunning):
        registry.remove("again")
    registry.stop("again", wait=True)
    registry.remove("again")
    assert "again" not in registry


def test_history_survives_a_restart_and_running_agents_are_lost(config: Any) -> None:
    """A new registry on the same data dir has past agents, their history, and marks live ones lost."""
    first = Registry(config)
    run_to_end(first, name="done", command=["echo", "kept"])
    sleeper = first.create({"name": "sleeper", "command": ["sh", "-c", "echo one; echo two; sleep 30"]})
    gwait(lambda: len(lines(first, "sleeper")) == 2, 5)
    last_id = first.eventlog.last_id()
    # Simulate a crash: the registry goes away without stopping its agents (a dead process
    # holds no lock: the kernel lets go of it).
    first.eventlog.flush()
    assert first._lock is not None
    first._lock.release()
    second = Registry(config)
    try:
        assert [e.data["line"] for e in history(second, "done", "log")] == ["kept"]
        assert second.get("done").state == "exited"
        assert second.get("sleeper").state == "lost"
        assert second.eventlog.last_id() > last_id, "ids continue, never reused"
        # The second registry ended what the "crashed" first one left running (sh and sleep);
        # the first, still alive in this process, then reports its run's end as well.
        complete = [e for e in history(second, "sleeper", "complete") if e.data["state"] == "lost"]
        assert complete and complete[0].data["lines"] == 2 and complete[0].data["ended"] == 2
    finally:
        first.shutdown(grace=1.0)
        second.shutdown(grace=1.0)
    assert sleeper.state == "exited"


def test_agent_added_and_removed_are_announced_on_the_supervisor_channel(registry: Registry) -> None:
    """Defining an agent announces it with describe(record); deleting it announces that too, and
    both outlive the agent's own history."""
    registry.describe = lambda record: {"name": record.name, "state": record.state, "run": record.run}
    run_to_end(registry, name="shown", command=["true"])
    registry.remove("shown")
    announced = [(e.type, e.data) for e in registry.eventlog.read_after(0).events
                 if e.type in (events.AGENT_ADDED, events.AGENT_REMOVED)]
    assert announced == [(events.AGENT_ADDED, {"agent": {"name": "shown", "state": None, "run": 0}}),
                         (events.AGENT_REMOVED, {"name": "shown"})]
    assert history(registry, "shown") == []


def test_remove_deletes_everything_kept(registry: Registry, config: Config) -> None:
    """remove() takes the agent's record, output and history off the disk; a new registry on
    the same data directory does not know it."""
    run_to_end(registry, name="doomed", command=["echo", "bye"])
    folder = Path(config.data_dir) / "agents" / "doomed"
    assert {p.name for p in folder.iterdir()} >= {"agent.json", "output.log", "events.000001.jsonl"}
    registry.remove("doomed")
    assert not folder.exists() and "doomed" not in registry
    with pytest.raises(AgentNotFound):
        registry.get("doomed")
    with pytest.raises(InvalidName):
        registry.remove("../etc")
    registry.shutdown()
    again = Registry(config)
    try:
        assert "doomed" not in again
    finally:
        again.shutdown()


def test_the_maximum_number_of_agents(tmp_path: Path) -> None:
    """Past max_agents a new name is refused; re-using an ended agent's name is not a new agent."""
    config = load_config(environ={"HOME": str(tmp_path)}, data_dir=str(tmp_path / "d"), max_agents=2)
    registry = Registry(config, persist=False)
    try:
        run_to_end(registry, name="one", command=["true"])
        run_to_end(registry, name="two", command=["true"])
        with pytest.raises(TooManyAgents):
            registry.create({"name": "three", "command": ["true"]})
        run_to_end(registry, name="two", command=["true"])
        assert [a.name for a in registry.list()] == ["one", "two"]
        assert registry.stats()["total_agents"] == 2 and registry.stats()["active_agents"] == 0
    finally:
        registry.shutdown()


def test_define_without_starting_saves_the_record(registry: Registry, config: Config) -> None:
    """create(start=False) defines the agent and saves its record; it has not run."""
    agent = registry.create({"name": "later", "command": ["true"]}, start=False)
    assert agent.state is None and agent.run == 0
    record = AgentStore(Path(config.data_dir)).load("later")
    assert record.spec == agent.spec and record.state is None


def test_a_damaged_record_lists_its_agent_as_lost(config: Config, caplog: pytest.LogCaptureFixture) -> None:
    """An unreadable agent.json, or one with a field that cannot be restored, does not stop the
    start and does not hide the agent: it is listed as lost, with the reason and its history,
    with one warning naming the file; defining it again runs it."""
    first = Registry(config)
    run_to_end(first, name="fine", command=["true"])
    run_to_end(first, name="broken", command=["echo", "still here"])
    first.shutdown()
    (Path(config.data_dir) / "agents" / "broken" / "agent.json").write_text("{not json")
    record = json.loads((Path(config.data_dir) / "agents" / "fine" / "agent.json").read_text())
    odd = Path(config.data_dir) / "agents" / "odd"
    odd.mkdir()
    (odd / "agent.json").write_text(json.dumps({**record, "spec": {**record["spec"], "name": "odd"},
                                                "state": "no-such-state"}))
    with caplog.at_level(logging.WARNING):
        second = Registry(config)
    try:
        assert second.get("fine").state == "exited"
        for name in ("broken", "odd"):
            agent = second.get(name)
            assert agent.state == "lost" and "cannot be read" in agent.reason
            warnings = [r for r in caplog.records if str(odd.parent / name / "agent.json") in r.getMessage()]
            assert len(warnings) == 1, warnings
        assert lines(second, "broken") == ["still here"]
        assert run_to_end(second, name="broken", command=["echo", "again"]).state == "exited"
        assert lines(second, "broken") == ["still here", "again"]
    finally:
        second.shutdown()


def test_an_unwritable_data_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A data directory that cannot be written is refused at once, with what to do about it."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = load_config(environ={"HOME": str(tmp_path)}, data_dir=str(blocker / "data"))
    with pytest.raises(DataDirError, match="--data-dir"):
        Registry(config)


def test_records_round_trip_and_older_ones_load() -> None:
    """A record survives to_dict/from_dict (its processes' figures excepted: they are live); one
    written before restarts/cols/rows/processes were kept loads with defaults from its spec."""
    spec = AgentSpec(name="r", command=["/bin/true"], cols=90, rows=20, leftovers="keep")
    live = RunRecord(mode="subreaper", mark="abc:r:2:0123abcd", boot_id="b", main=Identity(7, 99), started_at=1.0,
                     members=(Identity(7, 99), Identity(8, 100)))
    kept = Processes(mode="subreaper", leftovers="keep", ended=1, kept=2, live_run=live)
    record = AgentRecord(spec, state="running", run=2, pid=7, started_at=1.0, ended_at=2.5, exit_code=0,
                         reason="exited with code 0", lines=3, extractions=1, created_at=0.5, restarts=1,
                         cols=100, rows=30, processes=kept)
    assert AgentRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    # The live figures are never saved.
    figures = Figures(cpu_percent=1.0, rss_bytes=2, processes=3, uptime_s=4.0)
    live_record = dataclasses.replace(record, processes=dataclasses.replace(kept, usage=figures))
    assert AgentRecord.from_dict(live_record.to_dict()) == record
    old = {k: v for k, v in record.to_dict().items() if k not in ("restarts", "cols", "rows", "processes")}
    loaded = AgentRecord.from_dict(old)
    assert (loaded.restarts, loaded.cols, loaded.rows, loaded.processes) == (0, 90, 20, None)
    assert loaded.duration_s(100.0) == 1.5
    with pytest.raises(KeyError):
        AgentRecord.from_dict({"state": "exited"})
    # A live run that does not say which run it was (no mark: an older server's) is never trusted.
    processes = Processes.from_dict({"mode": "group", "live_run": {"main": [7, 99], "boot_id": "b"}})
    assert processes is not None and processes.live_run is None


def test_an_agent_whose_agent_added_cannot_be_kept_is_not_registered(registry: Registry) -> None:
    """An argument that no history can store (a lone surrogate: not UTF-8) is refused before
    the agent exists (the history is written after create returns, by the commit): no ghost with state null that restart would leave
    'starting' forever and DELETE refuse; the name can be used at once for a real agent."""
    import sys

    with pytest.raises(InvalidRequest, match="lone surrogate"):
        registry.create({"name": "ghost", "command": [sys.executable, "-c", "print('\ud800')"]})
    assert "ghost" not in registry and [a.name for a in registry.list()] == []
    with pytest.raises(AgentNotFound):
        registry.restart("ghost")
    agent = run_to_end(registry, name="ghost", command=["echo", "real"])
    assert (agent.state, agent.run, lines(registry, "ghost")) == ("exited", 1, ["real"])
