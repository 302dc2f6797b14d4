#!/usr/bin/env bash
# Smoke test of a live agent-supervisor with curl only: health, creating an agent, the stats
# endpoint, one stream, three concurrent streams counted by the stats. One PASS line per step;
# the first failure prints FAIL and exits 1.
#
#   scripts/test_sse.sh                          # starts a server of its own on a free port
#   scripts/test_sse.sh http://127.0.0.1:8151    # or tests one that runs (or $AGENT_SUPERVISOR_URL)
#
# The token: $AGENT_SUPERVISOR_TOKEN, else the one `agent-supervisor token` finds for the URL in
# the data dir's server.json (the default one, or $AGENT_SUPERVISOR_DATA_DIR); a server of its
# own has its token read from its server.json.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
URL=${1:-${AGENT_SUPERVISOR_URL:-}}
URL=${URL%/}
TOKEN=${AGENT_SUPERVISOR_TOKEN:-}
NAME="sse-smoke-$$"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/test_sse.XXXXXX")
SERVER_PID=""
CURL_PIDS=""

if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=${PYTHON:-$ROOT/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi

pass() { printf 'PASS  %s\n' "$*"; }
fail() {
    printf 'FAIL  %s\n' "$*" >&2
    exit 1
}

cleanup() {
    for pid in $CURL_PIDS; do kill "$pid" 2>/dev/null; done
    if [ -n "$URL" ]; then
        api -X POST "$URL/api/agents/$NAME/stop" -d '{"grace_s": 1}' >/dev/null 2>&1
        # Deleting needs the agent to have ended: retry briefly.
        for _ in $(seq 1 50); do
            code=$(api -o /dev/null -w '%{http_code}' -X DELETE "$URL/api/agents/$NAME" 2>/dev/null)
            case "$code" in 204 | 404 | 000) break ;; esac
            sleep 0.1
        done
    fi
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# curl with the token (if any) and JSON content type.
api() {
    if [ -n "$TOKEN" ]; then
        curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"
    else
        curl -s -H 'Content-Type: application/json' "$@"
    fi
}

# The number after "KEY": in a JSON text (good enough for the flat counters we read).
json_number() {
    printf '%s' "$2" | tr -d '\n' | sed -n "s/.*\"$1\": *\([0-9][0-9]*\).*/\1/p"
}

command -v curl >/dev/null || fail "curl is not installed"

# 1. A server: the one given, or one of our own on a free port and a throwaway data directory.
if [ -z "$URL" ]; then
    (cd "$ROOT" && exec "$PYTHON" -m supervisor serve --port 0 --data-dir "$WORK/data" \
        >"$WORK/server.out" 2>"$WORK/server.log") &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        URL=$(sed -n 's/^agent-supervisor: serving on //p' "$WORK/server.out")
        [ -n "$URL" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$URL" ] || fail "the server did not start: $(tail -5 "$WORK/server.log")"
    TOKEN=$(cd "$ROOT" && "$PYTHON" -m supervisor token --data-dir "$WORK/data") ||
        fail "no token in $WORK/data/server.json"
    pass "started a server at $URL (its generated token read from its server.json)"
elif [ -z "$TOKEN" ]; then
    TOKEN=$(cd "$ROOT" && "$PYTHON" -m supervisor token --url "$URL" 2>/dev/null) || TOKEN=""
fi
health=$(curl -s --max-time 5 "$URL/healthz") || fail "no answer from $URL/healthz (is the server running?)"
case "$health" in *'"status"'*'"ok"'*) pass "GET /healthz: $health" ;; *) fail "GET /healthz answered: $health" ;; esac

# 2. An agent that prints a line every 0.2 s until it is stopped.
body='{"name": "'$NAME'", "command": ["sh", "-c", "i=0; while :; do i=$((i+1)); echo \"tick $i\"; sleep 0.2; done"]}'
code=$(api -o "$WORK/create.json" -w '%{http_code}' -X POST "$URL/api/agents" -d "$body")
[ "$code" = 201 ] || fail "POST /api/agents answered $code: $(cat "$WORK/create.json")"
grep -q '"state"' "$WORK/create.json" || fail "POST /api/agents: no agent in $(cat "$WORK/create.json")"
pass "POST /api/agents created agent $NAME"

# 3. The stats endpoint.
stats=$(api --max-time 5 "$URL/api/sse/stats") || fail "GET /api/sse/stats failed"
for key in total_agents total_clients agents events_published clients; do
    case "$stats" in *"\"$key\""*) ;; *) fail "GET /api/sse/stats lacks \"$key\": $stats" ;; esac
done
case "$stats" in *"\"$NAME\""*) ;; *) fail "GET /api/sse/stats does not list $NAME: $stats" ;; esac
pass "GET /api/sse/stats lists the agent (total_agents=$(json_number total_agents "$stats"))"

# 4. One stream: the connected event, then log events with data.
stream_url="$URL/api/agents/$NAME/stream"
[ -n "$TOKEN" ] && stream_url="$stream_url?token=$TOKEN"
curl -sN --max-time 2 "$stream_url" >"$WORK/stream0.txt"
grep -q '^event: connected' "$WORK/stream0.txt" || fail "no 'event: connected' in the stream: $(head -c 300 "$WORK/stream0.txt")"
grep -q '^event: log' "$WORK/stream0.txt" || fail "no 'event: log' in the stream: $(head -c 300 "$WORK/stream0.txt")"
grep -q '^data: {.*"type":"log".*"line":"tick [0-9]*"' "$WORK/stream0.txt" ||
    fail "no log data with a line in the stream: $(head -c 300 "$WORK/stream0.txt")"
grep -q '^id: [0-9]' "$WORK/stream0.txt" || fail "events in the stream have no id"
pass "GET $URL/api/agents/$NAME/stream: connected, then $(grep -c '^event: log' "$WORK/stream0.txt") log events with data"

# 5. Three concurrent clients: all receive data, and the stats count them while they are on.
for i in 1 2 3; do
    curl -sN --max-time 4 "$stream_url" >"$WORK/stream$i.txt" &
    CURL_PIDS="$CURL_PIDS $!"
done
counted=""
for _ in $(seq 1 50); do
    stats=$(api --max-time 5 "$URL/api/sse/stats")
    n=$(printf '%s' "$stats" | tr -d '\n' | sed -n "s/.*\"$NAME\": *\([0-9][0-9]*\).*/\1/p")
    if [ -n "$n" ] && [ "$n" -ge 3 ]; then counted=$n; break; fi
    sleep 0.1
done
[ -n "$counted" ] || fail "the stats never counted 3 clients of $NAME: $stats"
total=$(json_number total_clients "$stats")
[ "${total:-0}" -ge 3 ] || fail "total_clients is ${total:-missing} with 3 clients connected: $stats"
pass "GET /api/sse/stats counts the concurrent clients (agents.$NAME=$counted, total_clients=$total)"
for pid in $CURL_PIDS; do wait "$pid"; done
CURL_PIDS=""
for i in 1 2 3; do
    grep -q '^event: connected' "$WORK/stream$i.txt" || fail "client $i got no 'connected' event"
    grep -q '^data: {.*"line":"tick' "$WORK/stream$i.txt" || fail "client $i got no log data"
done
pass "3 concurrent clients all received data ($(grep -c '^event: log' "$WORK/stream1.txt"), $(grep -c '^event: log' "$WORK/stream2.txt"), $(grep -c '^event: log' "$WORK/stream3.txt") log events)"

# 6. Gone clients are forgotten.
gone=""
for _ in $(seq 1 50); do
    stats=$(api --max-time 5 "$URL/api/sse/stats")
    n=$(printf '%s' "$stats" | tr -d '\n' | sed -n "s/.*\"$NAME\": *\([0-9][0-9]*\).*/\1/p")
    if [ "$n" = 0 ]; then gone=yes; break; fi
    sleep 0.1
done
[ -n "$gone" ] || fail "the stats still count clients of $NAME after they left: $stats"
pass "GET /api/sse/stats forgets clients that left (agents.$NAME=0)"

# 7. Stopping ends the agent, and its stream ends with 'complete'.
code=$(api -o /dev/null -w '%{http_code}' -X POST "$URL/api/agents/$NAME/stop" -d '{"grace_s": 1}')
[ "$code" = 202 ] || fail "POST /api/agents/$NAME/stop answered $code"
curl -sN --max-time 10 "$stream_url" >"$WORK/stream4.txt"
grep -q '^event: complete' "$WORK/stream4.txt" || fail "the stream of the stopped agent has no 'complete' event"
pass "POST /api/agents/$NAME/stop: the stream ends with 'complete'"
echo "all SSE smoke tests passed"
