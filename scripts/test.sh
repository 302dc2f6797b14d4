#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite: type checks, pytest (unit,
# real-PTY, real-server and headless-Chromium tests) and the curl smoke test.
# Screenshots and logs go to $CI_OUTPUT_DIR (default ./ci-output).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test

# Debian packages the tests use: Chromium for the browser tests (never a browser downloaded by a
# test tool), tmux as the oracle of what a terminal shows, zsh for its completion script, less, one of the programs the
# virtual-screen tests compare with it, and redis-server for the Redis backend's tests (each
# test starts its own, on a socket in a temporary folder; none runs as a service).
packages=()
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || packages+=(chromium chromium-driver)
command -v tmux >/dev/null || packages+=(tmux)
command -v less >/dev/null || packages+=(less)
command -v redis-server >/dev/null || packages+=(redis-server)
command -v zsh >/dev/null || packages+=(zsh)  # the zsh completion script is run by zsh itself
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${packages[*]} with apt-get ..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    echo "setup: missing ${packages[*]}: run 'sudo apt-get install ${packages[*]}'" \
         "(the tests that need them are skipped without them, and fail under CI=true)" >&2
  fi
fi

# The real codex CLI, pinned, into .tools/ (ignored by git), for tests/test_real_tools.py.
codex_version=0.169.0
if [ ! -x .tools/node_modules/.bin/codex ] && command -v npm >/dev/null; then
  echo "setup: installing @openai/codex@$codex_version into .tools/ ..." >&2
  npm install --prefix .tools --no-audit --no-fund --loglevel=error "@openai/codex@$codex_version" >/dev/null \
    || echo "setup: could not install @openai/codex (its tests will say so)" >&2
fi

export CI_OUTPUT_DIR="${CI_OUTPUT_DIR:-$PWD/ci-output}"
mkdir -p "$CI_OUTPUT_DIR"
# The curl-only smoke test, against a server of its own, runs while the checkers do: it mostly
# waits on its server.
bash scripts/test_sse.sh > "$CI_OUTPUT_DIR/test_sse.log" 2>&1 &
smoke=$!
.venv/bin/mypy                                     # strict, over supervisor, api, tests, scripts (setup.cfg)
.venv/bin/ruff check supervisor api tests scripts  # rules, and a reason beside each exception: pyproject.toml
if ! wait "$smoke"; then
  cat "$CI_OUTPUT_DIR/test_sse.log" >&2
  echo "scripts/test_sse.sh failed" >&2
  exit 1
fi
tail -n 1 "$CI_OUTPUT_DIR/test_sse.log"  # "all SSE smoke tests passed"
echo "test: screenshots and logs go to $CI_OUTPUT_DIR" >&2
.venv/bin/pytest "$@"      # last, so that its summary is the closing line
