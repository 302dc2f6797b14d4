"""What the tests share: waiting on conditions, processes (a real server, tiny agents, the
process tree), SSE over raw sockets, plain HTTP and a TCP proxy, the command line, the browser
fixtures, and stand-ins for what a test cannot reach (the model API behind codex, the network).

Every wait has a deadline; nothing here sleeps to synchronise.
"""
from __future__ import annotations

from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parent.parent.parent
