#!/usr/bin/env bash
# Server benchmark: check-in requests per second and p99 latency with DEVICES registered
# devices (default 1,000,000), on SQLite and on PostgreSQL, next to nginx answering a static
# 200 on the same machine in the same run; and payload download throughput next to nginx
# serving the same file with sendfile. Each backend ends with a markdown row and one JSON
# verdict line:
#   {"backend": "sqlite", "devices": N, "checkin_rps": N, "checkin_p99_ms": N, "nginx_rps": N,
#    "checkin_ratio": N, "download_mbps": N, "nginx_download_mbps": N, "download_ratio": N}
#
#   scripts/server-bench.sh                              # both backends, 1M devices
#   DEVICES=100000 DURATION=10 scripts/server-bench.sh   # a quick run
#   BACKENDS=sqlite DEVICES=100000 scripts/server-bench.sh
#   SCALE=1 DEVICES=10000000 BACKENDS=postgres scripts/server-bench.sh
#       # the scale run: registers DEVICES through the batch API (one name and token each),
#       # measures check-ins only, and records the server's peak RSS; its JSON line has
#       # "registration_s" and "peak_rss_mb" instead of the download fields
#
# BIN=path/to/suitcase uses that binary instead of building one.
# Every row also shows the server's peak RSS (VmHWM in /proc/PID/status, read before it stops).
# Needs: wrk and nginx (installed from Debian if missing), PostgreSQL on 127.0.0.1:5432 (user
# postgres, database test) for the postgres backend.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-1000000}
ACTIVE=${ACTIVE:-100000}     # distinct devices the load generator rotates through
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-20}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PAYLOAD_MB=${PAYLOAD_MB:-16}
BACKENDS=${BACKENDS:-sqlite postgres}
SCALE=${SCALE:-}
[ "$ACTIVE" -gt "$DEVICES" ] && ACTIVE=$DEVICES
WORK=${WORK:-$(mktemp -d /tmp/suitcase-bench.XXXXXX)}
mkdir -p "$WORK"
PORT=18480
NGINX_PORT=18481

for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { apt-get install -y -qq "$tool" >/dev/null; }
done
if [ -z "${BIN:-}" ]; then
  echo "building suitcase (release)..." >&2
  cargo build --release -q -p suitcase-cli
  BIN="${CARGO_TARGET_DIR:-target}/release/suitcase"
fi

cleanup() {
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT

# --- nginx: a static 200 and the same payload file ------------------------------------------
head -c $((PAYLOAD_MB * 1024 * 1024)) /dev/urandom > "$WORK/payload.bin"
mkdir -p "$WORK/www" && cp "$WORK/payload.bin" "$WORK/www/payload.bin"
# nginx workers run as nobody: let them read the file.
chmod 755 "$WORK" "$WORK/www" && chmod 644 "$WORK/www/payload.bin"
cat > "$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location = /ok { return 200 "ok"; }
    # The same request the check-in benchmark sends, answered with a static 200, so that
    # both sides pay the same load-generator cost.
    location = /api/v1/device/checkin { default_type application/json; return 200 '{"action":"none","next_poll_seconds":300}'; }
    location / { root $WORK/www; }
  }
}
EOF
nginx -c "$WORK/nginx.conf"

# --- wrk scripts -------------------------------------------------------------------------------
cat > "$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  if summary.errors.status > 0 then
    io.stderr:write(string.format("WARNING: %d responses were not 2xx/3xx\n", summary.errors.status))
  end
  io.write(string.format("RESULT %.0f %.2f %.1f\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(99) / 1000,
    summary.bytes / (summary.duration / 1e6) / 1e6))
end
EOF
cat > "$WORK/checkin.lua" <<'EOF'
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local body = '{"components":[{"id":["617070"],"sequence_number":1}],"agent":"bench"}'
local i = math.random(#tokens)
request = function()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("POST", "/api/v1/device/checkin",
    {["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json"}, body)
end
EOF
cat "$WORK/report.lua" >> "$WORK/checkin.lua"
cat > "$WORK/download.lua" <<'EOF'
local token = os.getenv("DEVICE_TOKEN")
request = function()
  return wrk.format("GET", os.getenv("DL_PATH"), token and {["Authorization"] = "Bearer " .. token} or {})
end
EOF
cat "$WORK/report.lua" >> "$WORK/download.lua"

run_wrk() { # url script -> "rps p99ms MB/s"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$2" "$1" | awk '/^RESULT/ {print $2, $3, $4}'
}

# --- suitcase: register devices, a release with a payload, a campaign for one device -------
bench_backend() { # name database-url-or-empty
  local name=$1 db=$2 data="$WORK/data-$1"
  rm -rf "$data"
  local args=(server --data "$data" --listen "127.0.0.1:$PORT")
  [ -n "$db" ] && args+=(--database "$db")
  RUST_LOG=warn "$BIN" "${args[@]}" > "$WORK/server-$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  local admin; admin=$(cat "$data/admin-token")
  local api="http://127.0.0.1:$PORT/api/v1"
  echo "[$name] registering $DEVICES devices..." >&2
  local t0; t0=$(date +%s.%N)
  : > "$WORK/tokens-$name.txt"
  python3 - "$api" "$admin" "$DEVICES" "$ACTIVE" "$WORK/tokens-$name.txt" <<'EOF'
import json, sys, urllib.request
api, admin, n, active, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
batch = 10000
kept = []
for start in range(0, n, batch):
    body = json.dumps([{"name": f"bench-{i}"} for i in range(start, min(n, start + batch))]).encode()
    req = urllib.request.Request(f"{api}/devices/batch", data=body, method="POST",
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        for d in json.load(r):
            if len(kept) < active:
                kept.append(d["token"])
with open(out, "w") as f:
    f.write("\n".join(kept) + "\n")
EOF
  local t1; t1=$(date +%s.%N)
  REG_SECONDS=$(python3 -c "print(round($t1 - $t0, 1))")
  # A release whose payload device 0 downloads.
  "$BIN" key generate --alg es256 -o "$WORK/author-$name.key" --public "$WORK/author-$name.pub" >/dev/null
  python3 - "$api" "$admin" "$WORK/author-$name.pub" <<'EOF'
import json, sys, urllib.request
api, admin, pub = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
req = urllib.request.Request(f"{api}/keys", data=json.dumps({"name": "author", "key": pub}).encode(), method="POST",
    headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
EOF
  "$BIN" release build --image "$WORK/payload.bin" --vendor example.com --class bench --sequence 2 \
    --uri https://fw.example/payload.bin --profile basic --sign "$WORK/author-$name.key" -o "$WORK/rel-$name.suit" >/dev/null
  local rel; rel=$(curl -sf -X POST -H "Authorization: Bearer $admin" --data-binary @"$WORK/rel-$name.suit" "$api/releases" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -sf -X PUT -H "Authorization: Bearer $admin" --data-binary @"$WORK/payload.bin" "$api/releases/$rel/payloads/0" >/dev/null
  local cid; cid=$(curl -sf -X POST -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
    -d "{\"name\":\"dl\",\"release_id\":\"$rel\",\"filter\":{\"devices\":[\"bench-0\"]}}" "$api/campaigns" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -sf -X POST -H "Authorization: Bearer $admin" "$api/campaigns/$cid/start" >/dev/null
  local dev0; dev0=$(head -1 "$WORK/tokens-$name.txt")
  curl -sf -X POST -H "Authorization: Bearer $dev0" -H 'content-type: application/json' -d '{}' "$api/device/checkin" >/dev/null

  echo "[$name] warming up, then measuring check-ins..." >&2
  # The warm-up is long enough for each wrk thread to walk all ACTIVE tokens once: what is
  # measured is the steady state of devices the server has seen (first contact costs one
  # indexed read and a share of a batched write; a restarted server reads each device again).
  TOKENS="$WORK/tokens-$name.txt" DURATION=$WARMUP run_wrk "http://127.0.0.1:$PORT" "$WORK/checkin.lua" >/dev/null
  local nginx_ok; nginx_ok=$(TOKENS="$WORK/tokens-$name.txt" run_wrk "http://127.0.0.1:$NGINX_PORT" "$WORK/checkin.lua")
  local checkin; checkin=$(TOKENS="$WORK/tokens-$name.txt" run_wrk "http://127.0.0.1:$PORT" "$WORK/checkin.lua")
  local nginx_dl="" dl=""
  if [ -z "$SCALE" ]; then
    echo "[$name] measuring downloads..." >&2
    nginx_dl=$(DL_PATH=/payload.bin run_wrk "http://127.0.0.1:$NGINX_PORT" "$WORK/download.lua")
    dl=$(DEVICE_TOKEN=$dev0 DL_PATH="/api/v1/device/payloads/$rel/0" run_wrk "http://127.0.0.1:$PORT" "$WORK/download.lua")
  fi
  local peak_kb; peak_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  read -r n_rps n_p99 _ <<<"$nginx_ok"
  read -r c_rps c_p99 _ <<<"$checkin"
  read -r _ _ n_mbs <<<"${nginx_dl:-0 0 0}"
  read -r _ _ d_mbs <<<"${dl:-0 0 0}"
  python3 - "$name" "$DEVICES" "$REG_SECONDS" "$n_rps" "$n_p99" "$c_rps" "$c_p99" "$n_mbs" "$d_mbs" "$peak_kb" "$SCALE" <<'EOF'
import json, sys
name, devices, reg, n_rps, n_p99, c_rps, c_p99, n_mbs, d_mbs, peak_kb, scale = sys.argv[1:]
n_rps, c_rps, n_mbs, d_mbs = float(n_rps), float(c_rps), float(n_mbs), float(d_mbs)
peak_mb = int(peak_kb) / 1024
verdict = {"backend": name, "devices": int(devices), "checkin_rps": round(c_rps),
           "checkin_p99_ms": float(c_p99), "nginx_rps": round(n_rps),
           "checkin_ratio": round(c_rps / n_rps, 2)}
if scale:
    print(f"| {name} | {int(devices):,} | {reg} s | {c_rps:,.0f} | {c_p99} ms | {n_rps:,.0f} | {n_p99} ms | **{c_rps / n_rps:.2f}** | {peak_mb:,.0f} MB |")
    verdict.update({"registration_s": float(reg), "peak_rss_mb": round(peak_mb)})
else:
    print(f"| {name} | {int(devices):,} | {reg} s | {c_rps:,.0f} | {c_p99} ms | {n_rps:,.0f} | {n_p99} ms | **{c_rps / n_rps:.2f}** | {d_mbs:,.0f} MB/s | {n_mbs:,.0f} MB/s | **{d_mbs / n_mbs:.2f}** | {peak_mb:,.0f} MB |")
    verdict.update({"download_mbps": round(d_mbs), "nginx_download_mbps": round(n_mbs),
                    "download_ratio": round(d_mbs / n_mbs, 2)})
print(json.dumps(verdict))
EOF
}

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; the same check-in request (rotating over $ACTIVE of the registered devices' tokens) goes to suitcase and to nginx, which answers it with a static 200; payload $PAYLOAD_MB MiB"
echo
if [ -n "$SCALE" ]; then
  echo "| backend | devices | registration | check-in req/s | check-in p99 | nginx 200 req/s | nginx p99 | check-in / nginx | server peak RSS |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
else
  echo "| backend | devices | registration | check-in req/s | check-in p99 | nginx 200 req/s | nginx p99 | check-in / nginx | download | nginx download | download / nginx | server peak RSS |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
fi
for backend in $BACKENDS; do
  case $backend in
    sqlite) bench_backend sqlite "" ;;
    postgres)
      PGSCHEMA="bench_$(date +%s)"
      psql -q -h 127.0.0.1 -U postgres -d test -c "CREATE SCHEMA $PGSCHEMA" >/dev/null
      bench_backend postgres "postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D$PGSCHEMA"
      psql -q -h 127.0.0.1 -U postgres -d test -c "DROP SCHEMA $PGSCHEMA CASCADE" >/dev/null
      ;;
    *) echo "unknown backend $backend (sqlite or postgres)" >&2; exit 2 ;;
  esac
done
