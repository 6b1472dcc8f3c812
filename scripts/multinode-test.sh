#!/usr/bin/env bash
# Three stateless `suitcase server` nodes on one PostgreSQL, payloads in S3 (moto), haproxy in
# front with health checks; a campaign of simulated devices (`suitcase sim`) runs through the
# balancer while one node is killed with SIGKILL. Checks, in the database:
#   run 1 (healthy devices, node 2 killed mid-campaign): the campaign completes; every device
#     has one member row, succeeded; every step report is there exactly once; no device got
#     an offer (and so sent a report) after its clean-up success; each wave opened once;
#   run 2 (bad image, node 2 back, node 3 killed mid-campaign): the error threshold tripped
#     exactly once (one campaign.rollback in the audit log), the campaign rolled back.
# Any violation fails the script (exit 1) with what was found. docs/deployment.md.
#
#   scripts/multinode-test.sh [SUITCASE_BIN]      # default target/debug/suitcase
#
# Uses the PostgreSQL on 127.0.0.1:5432 (user postgres, trust; started if it is down) with a
# fresh database per run, dropped at the end; starts moto_server and haproxy on free ports.
# Every wait is bounded; everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/suitcase}
[ -x "$BIN" ] || { echo "usage: $0 [SUITCASE_BIN] (no executable at $BIN)" >&2; exit 2; }
BIN=$(realpath "$BIN")
for tool in haproxy moto_server psql pg_isready curl python3; do
  command -v "$tool" >/dev/null || { echo "multinode-test: $tool is needed (.ci/run installs haproxy and moto)" >&2; exit 2; }
done
DEVICES=${DEVICES:-100}
started=$SECONDS
WORK=$(mktemp -d /tmp/suitcase-multinode-XXXXXX)
DB=multinode_$(date +%s)_$$
PSQL=(psql -h 127.0.0.1 -p 5432 -U postgres -v ON_ERROR_STOP=1 -qtA)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ]; then
    echo "multinode-test: FAILED; the last lines of each log:" >&2
    for f in "$WORK"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2 || true; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "multinode-test: VIOLATION: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_for SECONDS WHAT COMMAND...: polls every 0.2 s, fails after SECONDS.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || fail "$what: not within ${secs}s"
    sleep 0.2
  done
}
q() { "${PSQL[@]}" -d "$DB" -c "$1"; }

# PostgreSQL (as .ci/run starts it).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
wait_for 30 "PostgreSQL on 127.0.0.1:5432" pg_isready -h 127.0.0.1 -p 5432 -q
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB" >/dev/null
DATABASE=postgres://postgres@127.0.0.1:5432/$DB

# S3 (moto) and its bucket.
MOTO_PORT=$(free_port)
moto_server -p "$MOTO_PORT" -H 127.0.0.1 >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
S3=http://127.0.0.1:$MOTO_PORT
wait_for 30 "moto_server" curl -fsS "$S3"
curl -fsS -X PUT "$S3/fw-bucket" >/dev/null
PAYLOADS="s3://fw-bucket/suitcase?endpoint=$S3&region=us-east-1&access_key_id=test&secret_access_key=test"

# Three nodes: one database, one bucket, each its own data directory (only the first start's
# admin token file matters) and port.
declare -A NODE_PID NODE_PORT
launch_node() {
  local n=$1
  [ -n "${NODE_PORT[$n]:-}" ] || NODE_PORT[$n]=$(free_port)
  RUST_LOG=warn "$BIN" server --data "$WORK/node$n" --listen "127.0.0.1:${NODE_PORT[$n]}" \
    --database "$DATABASE" --payloads "$PAYLOADS" --poll-interval 2 \
    >>"$WORK/node$n.log" 2>&1 &
  NODE_PID[$n]=$!
  PIDS+=($!)
}
healthy() { curl -fsS "http://127.0.0.1:${NODE_PORT[$1]}/healthz"; }
launch_node 1
wait_for 60 "node 1 healthy" healthy 1
# Nodes 2 and 3 start together: they take turns on the migration lock.
launch_node 2
launch_node 3
wait_for 60 "node 2 healthy" healthy 2
wait_for 60 "node 3 healthy" healthy 3
TOKEN_FILE=$WORK/node1/admin-token
[ -s "$TOKEN_FILE" ] || fail "node 1 wrote no admin token"

# haproxy: round robin, /healthz checked every 300 ms, a node out after 2 failures; a request
# whose connection could not be made goes to another node (retry-on conn-failure is safe
# for every request: nothing reached the node).
LB_PORT=$(free_port)
cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
    retry-on conn-failure
frontend suitcase
    bind 127.0.0.1:$LB_PORT
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server check inter 300ms fall 2 rise 2
    server n1 127.0.0.1:${NODE_PORT[1]}
    server n2 127.0.0.1:${NODE_PORT[2]}
    server n3 127.0.0.1:${NODE_PORT[3]}
EOF
haproxy -c -f "$WORK/haproxy.cfg" >/dev/null
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
LB=http://127.0.0.1:$LB_PORT
wait_for 30 "haproxy" curl -fsS "$LB/healthz"
echo "multinode-test: PostgreSQL db $DB, moto :$MOTO_PORT, nodes :${NODE_PORT[1]} :${NODE_PORT[2]} :${NODE_PORT[3]}, haproxy :$LB_PORT"

# run_sim NAME KILL_NODE AT SIM_ARGS...: a rehearsal through haproxy; once AT devices of the
# campaign are updating or finished (in_progress, succeeded, failed), SIGKILL node KILL_NODE.
run_sim() {
  local name=$1 kill_node=$2 at=$3; shift 3
  timeout 150 "$BIN" sim --server "$LB" --token-file "$TOKEN_FILE" --devices "$DEVICES" \
    --poll-cap 1 --timeout 120 --json "$@" >"$WORK/$name.json" 2>"$WORK/$name.log" &
  local sim=$!
  PIDS+=($sim)
  local end=$((SECONDS + 90)) killed=
  while kill -0 "$sim" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do
    local done_n
    done_n=$(q "SELECT COUNT(*) FROM campaign_devices cd JOIN campaigns c ON c.id = cd.campaign_id WHERE c.created_at >= $run_since AND cd.state IN ('in_progress', 'succeeded', 'failed')" 2>/dev/null || echo 0)
    if [ "${done_n:-0}" -ge "$at" ]; then
      kill -9 "${NODE_PID[$kill_node]}"
      wait "${NODE_PID[$kill_node]}" 2>/dev/null || true
      killed=yes
      echo "multinode-test: $name: node $kill_node killed (SIGKILL) with $done_n device(s) updating or finished"
      break
    fi
    sleep 0.2
  done
  [ -n "$killed" ] || fail "$name: the campaign never got going, no node was killed"
  wait "$sim" || fail "$name: suitcase sim exited with $?"
}

# ---- Run 1: every device must update, with node 2 killed mid-campaign.
run_since=$(date +%s)
run_sim run1 2 $((DEVICES / 4))
S1=$WORK/run1.json
j() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
CID=$(j "$S1" campaign_id)
REL=$(j "$S1" release_id)
[ "$(j "$S1" campaign_state)" = completed ] || fail "run 1: campaign $CID is $(j "$S1" campaign_state), not completed"
[ "$(j "$S1" updated)" = "$DEVICES" ] || fail "run 1: $(j "$S1" updated) of $DEVICES devices run the new image"
[ "$(q "SELECT state FROM campaigns WHERE id = '$CID'")" = completed ] || fail "run 1: the database does not say completed"
members=$(q "SELECT COUNT(*) FROM campaign_devices WHERE campaign_id = '$CID' AND state = 'succeeded'")
rows=$(q "SELECT COUNT(*) FROM campaign_devices WHERE campaign_id = '$CID'")
[ "$members" = "$DEVICES" ] && [ "$rows" = "$DEVICES" ] \
  || fail "run 1: $rows member rows, $members succeeded; want $DEVICES and $DEVICES"
dups=$(q "SELECT device_id || ' ' || step || ' ' || outcome || ' x' || COUNT(*) FROM reports WHERE release_id = '$REL' AND outcome IN ('success', 'failure') GROUP BY device_id, step, outcome HAVING COUNT(*) > 1")
[ -z "$dups" ] || fail "run 1: reports present more than once: $dups"
cleanups=$(q "SELECT COUNT(DISTINCT device_id) FROM reports WHERE release_id = '$REL' AND step = 'clean-up' AND outcome = 'success' AND campaign_id = '$CID'")
[ "$cleanups" = "$DEVICES" ] || fail "run 1: $cleanups of $DEVICES devices have their clean-up report"
after=$(q "SELECT COUNT(*) FROM reports r JOIN (SELECT device_id, MIN(id) AS done FROM reports WHERE release_id = '$REL' AND step = 'clean-up' AND outcome = 'success' GROUP BY device_id) d ON d.device_id = r.device_id WHERE r.release_id = '$REL' AND r.id > d.done")
[ "$after" = 0 ] || fail "run 1: $after report(s) after a device's clean-up success: it was offered the release again"
advances=$(q "SELECT COUNT(*) FROM audit WHERE action = 'campaign.advance' AND target = '$CID'")
[ "$advances" = 2 ] || fail "run 1: $advances wave openings in the audit log for 3 waves; want 2 (each exactly once)"
completes=$(q "SELECT COUNT(*) FROM audit WHERE action = 'campaign.complete' AND target = '$CID'")
[ "$completes" = 1 ] || fail "run 1: the campaign completed $completes times"
reports1=$(q "SELECT COUNT(*) FROM reports WHERE campaign_id = '$CID'")
echo "multinode-test: run 1 ok: $DEVICES/$DEVICES updated, $reports1 reports, waves opened once each, completed once"

# ---- Run 2: a bad image; node 2 restarts (it rejoins through haproxy's checks), node 3 dies.
# A first wave of half the fleet: its failures reach all nodes at once, and each judges.
launch_node 2
wait_for 60 "node 2 healthy again" healthy 2
# haproxy takes it back after two good checks (rise 2, every 300 ms).
sleep 1
run_since=$(date +%s)
run_sim run2 3 1 --faults bad-image --waves 50%,100%
S2=$WORK/run2.json
CID2=$(j "$S2" campaign_id)
[ "$(q "SELECT state FROM campaigns WHERE id = '$CID2'")" = rolled_back ] \
  || fail "run 2: campaign $CID2 is $(q "SELECT state FROM campaigns WHERE id = '$CID2'"), not rolled_back"
trips=$(q "SELECT COUNT(*) FROM audit WHERE target = '$CID2' AND action IN ('campaign.rollback', 'campaign.pause', 'campaign.abort')")
[ "$trips" = 1 ] || fail "run 2: the threshold tripped $trips times; want exactly 1"
rows2=$(q "SELECT COUNT(*) FROM campaign_devices WHERE campaign_id = '$CID2'")
[ "$rows2" = "$DEVICES" ] || fail "run 2: $rows2 member rows for $DEVICES devices"
unsettled=$(q "SELECT COUNT(*) FROM campaign_devices WHERE campaign_id = '$CID2' AND state IN ('pending', 'notified', 'in_progress', 'succeeded')")
[ "$unsettled" = 0 ] || fail "run 2: $unsettled devices neither rolled back nor cancelled"
dups2=$(q "SELECT device_id || ' ' || release_id || ' ' || step || ' ' || outcome FROM reports WHERE campaign_id = '$CID2' AND outcome IN ('success', 'failure') GROUP BY device_id, release_id, step, outcome HAVING COUNT(*) > 1")
[ -z "$dups2" ] || fail "run 2: reports present more than once: $dups2"
states2=$(q "SELECT string_agg(state || '=' || n, ' ') FROM (SELECT state, COUNT(*) AS n FROM campaign_devices WHERE campaign_id = '$CID2' GROUP BY state ORDER BY state) s")
echo "multinode-test: run 2 ok: tripped exactly once, rolled back ($states2)"

echo "multinode-test: PASS in $((SECONDS - started)) s: 3 nodes behind haproxy, $DEVICES devices per run, a node killed in each run, nothing lost or doubled"
