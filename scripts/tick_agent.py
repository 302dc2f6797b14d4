#!/usr/bin/env python3
"""A benchmark agent: prints ``tick n=<n> ts=<time.time_ns()> pad=...`` lines.

``--rate R`` lines per second on an absolute schedule (a late line is printed at once, never
skipped), or ``--rate 0`` for as fast as the terminal takes them (in batches, as a program with
block-buffered output would). The ``ts`` token is when the line was printed, so a load client
can measure print-to-receive latency through the whole supervisor.
"""
from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="lines per second; 0 = flat out")
    parser.add_argument("--count", type=int, default=0, help="lines to print; 0 = until killed")
    parser.add_argument("--size", type=int, default=120, help="line length in bytes, newline excluded")
    parser.add_argument("--batch", type=int, default=64, help="lines per write when --rate 0")
    args = parser.parse_args()
    out = sys.stdout.buffer
    n = 0
    start = time.monotonic()
    try:
        while not args.count or n < args.count:
            if args.rate > 0:
                n += 1
                wait = start + (n - 1) / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                out.write(_line(n, args.size))
                out.flush()
            else:
                batch = [_line(n + i + 1, args.size) for i in range(args.batch)]
                n += args.batch
                out.write(b"".join(batch))
                out.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    return 0


def _line(n: int, size: int) -> bytes:
    head = b"tick n=%d ts=%d pad=" % (n, time.time_ns())
    return head + b"." * max(0, size - len(head)) + b"\n"


if __name__ == "__main__":
    sys.exit(main())
