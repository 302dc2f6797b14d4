"""The benchmarks still run: ``scripts/bench_sse.py`` end to end on its smallest scenario, and
``scripts/bench_sampler.py`` on a few agents.

Not a timed test: it asserts what the benchmark reports (every client connected, nothing lost,
each target measured, the host's steal recorded), never how fast. It needs Node for the shared
``sseload`` client; where Node or the client is missing it skips, and fails under ``CI=true``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT

#: The shared load client, beside the checkout (as CI lays it out) unless $SSELOAD says where.
SSELOAD = Path(os.environ.get("SSELOAD") or ROOT.parent / "shared" / "tools" / "sseload")


def need_sseload() -> None:
    """Skip without Node or the load client; under CI=true that is a failure."""
    if not shutil.which("node") or not SSELOAD.exists():
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"the benchmark needs node and {SSELOAD}")
        pytest.skip(f"the benchmark needs node and {SSELOAD}")


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_bench_runs_ours_and_the_reference(tmp_path: Path) -> None:
    """Alternating runs of another checkout (``--base``: here this one), ours and both
    references, each with its CPU, steal and the machine's other work; a record names them."""
    need_sseload()
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_sse.py"), "fanout-10", "--duration", "1.5", "--repeat", "2",
         "--reference", "both", "--base", str(ROOT),
         "--json", str(out), "--sseload", str(SSELOAD)],
        capture_output=True, text=True, timeout=190,
    )
    assert run.returncode == 0, run.stderr
    record = json.loads(out.read_text())
    assert "--base" in record["command"] and record["commit"] and record["base_commit"] == record["commit"]
    results = record["results"]
    assert [r["target"] for r in results] == ["base", "ours", "reference", "reference-pty"] * 2, "alternating"
    for result in results:
        assert result["connected"] == 10 and result["loss_pct"] == 0 and result["missing"] == 0
        assert result["events_per_s_per_client"] > 50, result["sseload"]
        assert result["p50_ms"] > 0 and result["p99_ms"] >= result["p50_ms"]
        assert 0 <= result["host_steal_pct"] <= 100 and result["server_cpu_pct"] > 0
        assert 0 <= result["others_cpu_pct"] <= 200
    for target in ("base", "ours", "reference", "reference-pty"):
        assert f"fanout-10 [{target}] median of 2: p50=" in run.stdout, run.stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_replay_scenario_measures_both_windows(tmp_path: Path) -> None:
    """``replay-250k`` (here with 5,000 events) fills a history, measures the watchers alone and
    during the replays, and reports the replays' speed and /healthz's slowest answer."""
    need_sseload()
    out = tmp_path / "replay.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_sse.py"), "replay-250k", "--replay-events", "5000",
         "--duration", "1.5", "--json", str(out), "--sseload", str(SSELOAD)],
        capture_output=True, text=True, timeout=110,
    )
    assert run.returncode == 0, run.stderr
    [result] = json.loads(out.read_text())["results"]
    assert result["connected"] == 100 and result["missing"] == 0 and result["loss_pct"] == 0
    assert result["replays"] >= 2 and result["replay_events_per_s_agent"] > 0 and result["replay_events_per_s_all"] > 0
    assert result["p99_ms_alone"] > 0 and result["p99_ms"] > 0 and result["healthz_max_ms"] > 0
    assert "replay-250k [ours]:" in run.stdout, run.stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sampler_bench_measures_each_mode(tmp_path: Path) -> None:
    """``bench_sampler.py`` starts its agents, waits for their whole trees, reports the cost of
    each of the readings asked for per mode, and leaves no agent running."""
    out = tmp_path / "sampler.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_sampler.py"), "--agents", "3", "--samples", "2",
         "--json", str(out), "subreaper", "group"],
        capture_output=True, text=True, timeout=110,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())
    assert [r["mode"] for r in results] == ["subreaper", "group"]
    for result in results:
        assert result["agents"] == 3 and result["processes_per_agent"] == 2 and result["samples"] == 2
        assert 0 < result["median_ms"] <= result["max_ms"], result
        assert result["machine_processes"] > 6 and 0 <= result["host_steal_pct"] <= 100
    assert "subreaper: median of 1 runs" in run.stdout, run.stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_tui_scenario_runs_with_and_without_the_tui_agent(tmp_path: Path) -> None:
    """``tui-1mb`` runs alternately with and without a full-screen agent beside the line agent;
    the full-screen agent has its virtual screen (on the alternate screen) and draws at about
    its rate; the ratio of the p99s is reported."""
    if not shutil.which("node") or not SSELOAD.exists():
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"the benchmark needs node and {SSELOAD}")
        pytest.skip(f"the benchmark needs node and {SSELOAD}")
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_sse.py"), "tui-1mb", "--duration", "2",
         "--json", str(out), "--sseload", str(SSELOAD)],
        capture_output=True, text=True, timeout=110,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["target"] for r in results] == ["ours", "ours-no-tui"]
    with_tui, without = results
    assert with_tui["tui_screen"].startswith("120x40 alternate=True") and with_tui["tui_bytes_per_s"] > 100_000
    assert without["tui_screen"] is None and without["tui_bytes_per_s"] == 0
    for result in results:
        assert result["connected"] == 100 and result["events_per_s_per_client"] > 50, result["sseload"]
    # (With the TUI agent beside it the line agent's ids have gaps, which the load client counts
    # as missing: ids are the server's, and the TUI agent's screen events take some.)
    assert without["missing"] == 0
    assert "tui-1mb: p99 with the TUI agent / without = " in run.stdout, run.stdout


@pytest.mark.timeout(60)
def test_commit_bench_measures_both_checkouts() -> None:
    """``bench_commit.py`` measures the CPU per event of another checkout (here this one) and
    of this one, each importing its own ``supervisor``."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_commit.py"), "--events", "300", "--rounds", "2",
         "--batch", "3", "--base", str(ROOT)],
        capture_output=True, text=True, timeout=50,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["base", "ours"], run.stdout
    assert all(f"({ROOT}): median " in line and " us of CPU per event" in line for line in lines), run.stdout
