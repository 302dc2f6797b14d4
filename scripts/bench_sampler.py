#!/usr/bin/env python3
"""What the usage sampler costs the hub: N real agents, each a small process tree, sampled.

For each containment mode asked for (``cgroup``, ``subreaper``, ``group``), start an in-process
registry on a fresh data directory, start N agents (each ``sh`` with ``--children`` sleeping
children: 1 + children processes per agent), let the sampler take ``--samples`` readings at its
own pace (once a second), and report the time each reading kept the hub busy (the sampler's
own accounting: the time between its yields, so other greenlets' work does not count) as
median, p90 and max, per sample and per agent, with the number of processes on the machine (the
tree modes scan all of /proc) and the host's CPU steal over the window. Modes alternate
(``--repeat``) so that they are compared in the same minutes.

    scripts/bench_sampler.py                              # 100 agents, every mode available
    scripts/bench_sampler.py --agents 100 --repeat 3 cgroup subreaper
    scripts/bench_sampler.py --json sampler.json

Bounded: every run stops its agents and removes its data directory.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gevent  # noqa: E402

from supervisor.config import load_config  # noqa: E402
from supervisor.exceptions import ConfigError  # noqa: E402
from supervisor.registry import Registry  # noqa: E402


def steal_ticks() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) if len(fields) > 8 else 0


def total_ticks() -> int:
    with open("/proc/stat") as f:
        return sum(int(v) for v in f.readline().split()[1:])


def run(mode: str, agents: int, children: int, samples: int) -> dict[str, Any] | None:
    data = Path(tempfile.mkdtemp(prefix="bench-sampler-"))
    try:
        return measure(data, mode, agents, children, samples)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def measure(data: Path, mode: str, agents: int, children: int, samples: int) -> dict[str, Any] | None:
    config = load_config(environ={"HOME": str(data)}, data_dir=str(data / "data"), containment=mode,
                         stop_grace_s=1.0)
    try:
        registry = Registry(config)
    except ConfigError as exc:
        print(f"{mode}: not available here ({exc})", file=sys.stderr)
        return None
    command = ["sh", "-c", " ".join(["sleep 600 &"] * children) + " wait"]
    try:
        for i in range(agents):
            registry.create({"name": f"a{i}", "command": command})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every tree complete before measuring
            usage = [a.custody.usage() for a in registry.list()]
            if all(u is not None and u.processes == children + 1 for u in usage):
                break
            gevent.sleep(0.2)
        cost = registry.sampler.cost
        first = cost.samples
        costs: list[float] = []
        steal0, total0 = steal_ticks(), total_ticks()
        while len(costs) < samples:
            gevent.sleep(0.05)
            if cost.samples > first + len(costs):
                costs.append(cost.last_s * 1e3)
        steal = (steal_ticks() - steal0) / max(1, total_ticks() - total0) * 100
        processes = sum(1 for p in os.listdir("/proc") if p.isdigit())
    finally:
        registry.shutdown(grace=1.0)
    costs.sort()
    median = statistics.median(costs)
    return {
        "mode": mode, "agents": agents, "processes_per_agent": children + 1,
        "machine_processes": processes, "samples": len(costs),
        "median_ms": round(median, 3), "p90_ms": round(costs[int(len(costs) * 0.9) - 1], 3),
        "max_ms": round(costs[-1], 3), "per_agent_us": round(median / agents * 1e3, 1),
        "hub_share_pct": round(median / 10, 3),  # of each second the sampler keeps the hub
        "host_steal_pct": round(steal, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modes", nargs="*", default=["cgroup", "subreaper", "group"])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--children", type=int, default=1, help="sleeping children per agent")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for _ in range(args.repeat):
        for mode in args.modes:
            result = run(mode, args.agents, args.children, args.samples)
            if result is not None:
                results.append(result)
                print(json.dumps(result), flush=True)
    for mode in args.modes:
        mine = [r["median_ms"] for r in results if r["mode"] == mode]
        if mine:
            print(f"{mode}: median of {len(mine)} runs {statistics.median(mine):.2f} ms per sample "
                  f"for {args.agents} agents", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
