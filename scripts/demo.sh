#!/usr/bin/env bash
# Set up, start the server on http://127.0.0.1:8151 and run a demo agent in it; open the link it
# prints (it carries the generated token, which the dashboard keeps for its tab, in sessionStorage).
# Extra arguments go to `agent-supervisor serve` (e.g. --port 9000). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/agent-supervisor serve --demo "$@"
