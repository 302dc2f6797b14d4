#!/usr/bin/env python3
"""What the event log's path costs per event, in CPU time: append, write to history, publish.

By default one event per hub loop iteration (an agent printing a line now and then: the worst
case for a per-batch cost, since nothing is shared with other events; ``--batch 200`` is a
flood), to a real history file in a
temporary data directory, with one subscriber. CPU time of this process (``process_time``), so
that other work on the machine barely moves it. ``--base DIR`` runs the same measurement on
another checkout first (the commit before a change), in a child process that imports that
checkout's ``supervisor``; there, when the event log has no commit of its own (before write-ahead),
``flush`` is called the way its agents did, in a hub callback after the event is published.

    scripts/bench_commit.py
    scripts/bench_commit.py --base ../base --events 50000 --rounds 5
    scripts/bench_commit.py --base ../base --batch 200
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(events: int, rounds: int, batch: int) -> list[float]:
    """Microseconds of CPU per event, one figure per round."""
    import gevent
    from gevent.hub import get_hub

    from supervisor.eventlog import EventLog

    per_event = []
    with tempfile.TemporaryDirectory(prefix="bench-commit-") as tmp:
        log = EventLog(Path(tmp))
        received = [0]

        def receiver(sender: object, event: object) -> None:
            received[0] += 1

        subscription = log.subscribe(receiver)
        # Before write-ahead, the agent wrote its history in a hub callback after publishing.
        flush_after = None if hasattr(log, "replay") else log.flush
        loop = get_hub().loop
        line = "tick n=%d ts=1764631234567890123 " + "x" * 80
        for _ in range(rounds):
            started = time.process_time()
            for n in range(events):
                log.append("ticker", "log", {"line": line % n, "line_num": n + 1, "stream": "stdout", "run": 1})
                if n % batch == batch - 1:
                    if flush_after is not None:
                        loop.run_callback(flush_after)
                    gevent.sleep(0)
            log.flush()
            per_event.append((time.process_time() - started) / events * 1e6)
        subscription.close()
        assert received[0] == events * rounds, received
        log.close()
    return per_event


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1,
                        help="events per hub loop iteration (1: a line now and then; 100s: a flood)")
    parser.add_argument("--base", type=Path, help="another checkout, measured first in a child process")
    parser.add_argument("--label", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.base:
        env = {**os.environ, "PYTHONPATH": str(args.base.resolve())}
        subprocess.run([sys.executable, __file__, "--events", str(args.events), "--rounds", str(args.rounds),
                        "--batch", str(args.batch), "--label", "base"], env=env, cwd=args.base, check=True, timeout=600)
    if args.label == "ours":
        sys.path.insert(0, str(ROOT))  # this checkout's, whatever the virtualenv points at
    import supervisor

    figures = measure(args.events, args.rounds, max(1, args.batch))
    print(f"{args.label} ({Path(supervisor.__file__).parent.parent}): "
          f"median {statistics.median(figures):.1f} us of CPU per event "
          f"(rounds: {', '.join(f'{f:.1f}' for f in figures)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
