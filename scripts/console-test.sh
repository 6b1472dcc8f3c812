#!/usr/bin/env bash
# Browser tests of the operator console (docs/console.md): Debian's Chromium, driven headless
# by playwright-core, against a real `suitcase server` on a fresh data directory on
# 127.0.0.1, with a real campaign of simulated devices (`suitcase sim`).
#
#   scripts/console-test.sh SUITCASE_BIN [--screenshots DIR]
#   scripts/console-test.sh SUITCASE_BIN --bench-fleet N     # the fleet page with N devices
#
# Installs what is missing: Debian's chromium (apt-get) and the pinned playwright-core of
# ui-tests/package-lock.json (npm ci; playwright's own browser download is never used).
# Screenshots go to a temporary directory unless --screenshots names one (docs/console to
# refresh the committed ones). Every wait is bounded; the server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BIN=${1:-}
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "usage: $0 SUITCASE_BIN [--screenshots DIR]" >&2; exit 2; }
BIN=$(realpath "$BIN")
shift
SHOTS=""
BENCH=""
while [ $# -gt 0 ]; do
  case "$1" in
    --screenshots) SHOTS=$(realpath -m "$2"); shift 2 ;;
    --bench-fleet) BENCH=$2; shift 2 ;;
    *) echo "usage: $0 SUITCASE_BIN [--screenshots DIR]" >&2; exit 2 ;;
  esac
done

if [ -z "$BENCH" ] && [ ! -x /usr/bin/chromium ]; then
  echo "console-test: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get install -y --no-install-recommends chromium >/dev/null \
    || { timeout 300 apt-get update >/dev/null && timeout 600 apt-get install -y --no-install-recommends chromium >/dev/null; }
fi
command -v node >/dev/null || { echo "console-test: node (20+) is needed" >&2; exit 1; }
if [ -z "$BENCH" ] && [ ! -d ui-tests/node_modules/playwright-core ]; then
  (cd ui-tests && timeout 300 npm ci --no-audit --no-fund)
fi

WORK=$(mktemp -d /tmp/suitcase-console-XXXXXX)
[ -n "$SHOTS" ] || SHOTS=$WORK/shots
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
RUST_LOG=warn "$BIN" server --data "$WORK/data" --listen "127.0.0.1:$PORT" --poll-interval 2 \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  if [ -s "$WORK/data/admin-token" ] && curl -fsS "$BASE/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$BASE/healthz" >/dev/null || { echo "console-test: the server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
ADMIN_TOKEN=$(head -n1 "$WORK/data/admin-token")

if [ -n "$BENCH" ]; then
  # The fleet page with BENCH registered devices (docs/benchmarks.md): registered through the
  # API in batches of 10,000 with 20 tags; then, as check-ins would, 10 classes, 5 versions
  # and last-seen times spread over a day are written to the database directly (BENCH
  # check-ins would take longer than the measurement). Each URL is fetched 7 times after one
  # warm-up; the median and the slowest are printed.
  echo "console-bench: registering $BENCH devices..." >&2
  python3 - "$BASE" "$ADMIN_TOKEN" "$BENCH" <<'PY'
import json, sys, urllib.request
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for start in range(0, n, 10000):
    batch = [{"name": f"bench-{i:07d}", "tags": [f"t{i % 20}"]} for i in range(start, min(n, start + 10000))]
    req = urllib.request.Request(base + "/api/v1/devices/batch", data=json.dumps(batch).encode(),
        headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    urllib.request.urlopen(req, timeout=300).read()
PY
  python3 - "$WORK/data/suitcase.db" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=60)
now = int(time.time())
db.execute("UPDATE devices SET class_id = 'class-' || (abs(random()) % 10), sequence_number = 1 + abs(random()) % 5, last_seen = ? - abs(random()) % 86400", (now,))
db.commit()
PY
  curl -fsS -o /dev/null -D "$WORK/h" -H "origin: $BASE" --data-urlencode "token=$ADMIN_TOKEN" "$BASE/ui/signin"
  COOKIE=$(grep -i '^set-cookie:' "$WORK/h" | sed 's/^[^:]*: *//; s/;.*//' | tr -d '\r')
  LAST=$(printf 'bench-%07d' $((BENCH - 100)))
  printf '| page | median | slowest | rows |\n|---|---|---|---|\n'
  for path in "/ui/fleet" "/ui/fleet?limit=500" "/ui/fleet?after=$LAST" "/ui/fleet?tag=t7" \
      "/ui/fleet?class=class-3&version=2" "/ui/fleet?status=offline" "/ui/fleet?q=0999" \
      "/ui/fleet?silent=20"; do
    curl -fsS -o /dev/null -H "cookie: $COOKIE" "$BASE$path"
    times=$(for _ in 1 2 3 4 5 6 7; do curl -fsS -o "$WORK/page" -w '%{time_total}\n' -H "cookie: $COOKIE" "$BASE$path"; done | sort -n)
    rows=$(grep -o '<th scope="row"><a href="/ui/devices/' "$WORK/page" | wc -l)
    printf '| `%s` | %.0f ms | %.0f ms | %s |\n' "$path" "$(echo "$times" | sed -n 4p | awk '{print $1*1000}')" \
      "$(echo "$times" | tail -n1 | awk '{print $1*1000}')" "$rows"
  done
  exit 0
fi

echo "console-test: server $BASE, Chromium $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
status=0
(cd ui-tests && SUITCASE_BIN="$BIN" BASE="$BASE" ADMIN_TOKEN="$ADMIN_TOKEN" SHOTS="$SHOTS" \
  timeout 900 node console.test.mjs) || status=$?
if [ "$status" -ne 0 ]; then
  echo "console-test: FAILED (exit $status); the server's log:" >&2
  tail -n 50 "$WORK/server.log" >&2
fi
exit "$status"
