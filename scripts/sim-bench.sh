#!/usr/bin/env bash
# Fleet benchmark: DEVICES simulated devices (default 10,000; each the real agent on a
# simulated MCU) update through a three-wave campaign against a `suitcase server` running as
# its own process on SQLite. Reports the campaign's wall time and the server's CPU time and
# peak memory during it (sampled from /proc every 0.5 s). Results go to stdout as a markdown
# table row, and the simulator's JSON summary to $WORK/sim.json.
#
#   scripts/sim-bench.sh
#   DEVICES=2000 POLL=2 scripts/sim-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-10000}
POLL=${POLL:-5}              # the server's polling interval, seconds (±25% jitter)
CONCURRENCY=${CONCURRENCY:-256}
WORK=${WORK:-$(mktemp -d /tmp/suitcase-simbench.XXXXXX)}
PORT=18580

echo "building suitcase (release)..." >&2
cargo build --release -q -p suitcase-cli
BIN="${CARGO_TARGET_DIR:-target}/release/suitcase"

cleanup() {
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "${SAMPLER_PID:-}" ] && kill "$SAMPLER_PID" 2>/dev/null || true
}
trap cleanup EXIT

"$BIN" server --data "$WORK/server" --listen "127.0.0.1:$PORT" --poll-interval "$POLL" \
  > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
# Peak RSS: the kernel's high-water mark (VmHWM) covers the whole run.
(
  while kill -0 "$SERVER_PID" 2>/dev/null; do
    awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status" >> "$WORK/rss.samples"
    sleep 0.5
  done
) &
SAMPLER_PID=$!

CPU0=$(cpu_ticks)
T0=$(date +%s.%N)
set +e
"$BIN" sim --server "http://127.0.0.1:$PORT" --token-file "$WORK/server/admin-token" \
  --devices "$DEVICES" --concurrency "$CONCURRENCY" --timeout 3600 --json \
  --work "$WORK/devices" > "$WORK/sim.json"
STATUS=$?
set -e
T1=$(date +%s.%N)
CPU1=$(cpu_ticks)
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
rm -rf "$WORK/devices"

python3 - "$WORK/sim.json" "$DEVICES" "$POLL" "$CPU0" "$CPU1" "$TICK" "$T0" "$T1" "$HWM" "$STATUS" <<'PY'
import json, sys
path, devices, poll, c0, c1, tick, t0, t1, hwm, status = sys.argv[1:]
s = json.load(open(path))
wall = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(tick)
print("| devices | server poll interval | campaign wall time (sim) | updated / rolled back / failed | check-ins | server CPU time | server CPU (avg cores) | server peak RSS | bytes moved |")
print("|---|---|---|---|---|---|---|---|---|")
print(f"| {devices} | {poll} s | {s['seconds']:.1f} s | {s['updated']} / {s['rolled_back']} / {s['failed']} | {s['check_ins']} | {cpu:.1f} s | {cpu / wall:.2f} | {int(hwm) / 1024:.0f} MiB | {s['bytes_transferred'] / 1e6:.1f} MB |")
if status != "0":
    print(f"\n(suitcase sim exited with {status}: {s.get('errors')})")
PY
