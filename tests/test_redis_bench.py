"""The Redis append benchmark still runs: ``scripts/bench_redis.py`` end to end, small.

Not a timed test: it checks what the benchmark reports (every id where it should be, ours and
the reference alternating, the host's steal recorded), never how fast.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT
from support.redis_server import require


@pytest.mark.timeout(120)
def test_bench_redis_runs_ours_and_the_reference(tmp_path: Path) -> None:
    require()
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_redis.py"), "--events", "3000", "--batch", "50",
         "--depth", "1", "4", "--repeat", "2", "--reference", "--json", str(out)],
        capture_output=True, text=True, timeout=110,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())
    assert [r["target"] for r in results["runs"]] == ["ours", "reference"] * 4, "alternating"
    for result in results["runs"]:
        assert result["ids_checked"] is True
        assert result["events_per_s"] > 0 and result["host_steal_pct"] >= 0
        assert result["redis_cpu_pct"] is not None
    assert [(m["batch"], m["depth"], m["runs"]) for m in results["medians"]] == [(50, 1, 2), (50, 4, 2)]
    assert all("ratio_to_reference" in m for m in results["medians"])


@pytest.mark.timeout(120)
def test_bench_redis_eventlog_runs_the_whole_backend(tmp_path: Path) -> None:
    """``--eventlog``: RedisEventLog from append to published, every id dense and in order."""
    require()
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_redis.py"), "--eventlog", "--events", "5000",
         "--repeat", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=110,
    )
    assert run.returncode == 0, run.stderr
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 2 and all(r["target"] == "eventlog" and r["ids_checked"] is True for r in runs)
    assert all(r["written_per_s"] > 0 and r["events_per_s"] > 0 for r in runs)
