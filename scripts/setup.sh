#!/usr/bin/env bash
# Create .venv and install the project into it (editable), once per change of setup.cfg.
# Usage: scripts/setup.sh [extra]   e.g. "test" for the test tools. Sourced or run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extra="${1:-}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "agent-supervisor needs Python 3.11 or newer as '$python' (set PYTHON=...)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)-${extra:-base}"
if [ ! -e "$stamp" ]; then
  echo "setup: installing agent-supervisor${extra:+[$extra]} into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra:+[$extra]}"
  touch "$stamp"
fi
