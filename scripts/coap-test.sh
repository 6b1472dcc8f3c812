#!/usr/bin/env bash
# The CoAP device API (docs/coap.md) with two independent real clients against a real
# `suitcase server --coap-listen` on 127.0.0.1: libcoap's coap-client (Debian libcoap3-bin,
# OpenSSL build, DTLS 1.2 PSK) and aiocoap (PyPI, DTLS through DTLSSocket;
# scripts/coap-aiocoap.py). Each client, as its own device: discovery over coap://, the device
# resources refused without DTLS, the offer observed until a campaign offers the release, a
# check-in, the payload downloaded block-wise (SHA-256 equal to the uploaded file), a report.
#
#   scripts/coap-test.sh SUITCASE_BIN
#
# Needs coap-client-openssl (apt-get install libcoap3-bin) and python3 with aiocoap, cbor2
# and DTLSSocket (pip; DTLSSocket builds with autoconf, automake and libtool). Every wait is
# bounded; the server and the clients are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BIN=${1:-}
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "usage: $0 SUITCASE_BIN" >&2; exit 2; }
BIN=$(realpath "$BIN")
COAP_CLIENT=$(command -v coap-client-openssl || true)
[ -n "$COAP_CLIENT" ] || { echo "coap-test: coap-client-openssl is missing (apt-get install libcoap3-bin)" >&2; exit 1; }
python3 -c 'import aiocoap, cbor2, DTLSSocket' \
  || { echo "coap-test: python3 needs aiocoap, cbor2 and DTLSSocket (pip install)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/suitcase-coap-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "coap-test: FAIL: $*" >&2; [ -f "$WORK/server.log" ] && tail -20 "$WORK/server.log" >&2; exit 1; }
ok() { echo "coap-test: ok: $*"; }

free_port() { python3 -c "import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"; }
HTTP_PORT=$(free_port SOCK_STREAM)
COAP_PORT=$(free_port SOCK_DGRAM)
# The kernel may hand out the same free port twice: ask again (bounded) until they differ.
COAPS_PORT=$COAP_PORT
for _ in $(seq 1 20); do
  COAPS_PORT=$(free_port SOCK_DGRAM)
  [ "$COAPS_PORT" != "$COAP_PORT" ] && break
done
[ "$COAPS_PORT" != "$COAP_PORT" ] || fail "no second free UDP port"
BASE=http://127.0.0.1:$HTTP_PORT
RUST_LOG=warn "$BIN" server --data "$WORK/data" --listen "127.0.0.1:$HTTP_PORT" \
  --coap-listen "127.0.0.1:$COAP_PORT" --coaps-listen "127.0.0.1:$COAPS_PORT" \
  >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  [ -s "$WORK/data/admin-token" ] && curl -fsS --max-time 5 "$BASE/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS --max-time 5 "$BASE/healthz" >/dev/null || fail "the server did not start"
export SUITCASE_SERVER=$BASE SUITCASE_TOKEN
SUITCASE_TOKEN=$(head -n1 "$WORK/data/admin-token")

# A signed release of a 50,000-byte payload, and two devices with CoAP credentials.
timeout 60 "$BIN" key generate --alg es256 -o "$WORK/author.key" --public "$WORK/author.pub" >/dev/null
timeout 60 "$BIN" fleet key add author "$WORK/author.pub" >/dev/null
head -c 50000 /dev/urandom >"$WORK/app.bin"
timeout 60 "$BIN" release build --image "$WORK/app.bin" --component 00 --vendor example.com --class thermostat \
  --sequence 2 --uri https://fw.example/app.bin --profile basic --sign "$WORK/author.key" \
  -o "$WORK/app.suit" >/dev/null
RELEASE=$(timeout 60 "$BIN" fleet --json release upload "$WORK/app.suit" --payload "$WORK/app.bin" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
cred() {
  timeout 60 "$BIN" fleet device add "$1" --tag coap >/dev/null
  # shellcheck disable=SC2086
  timeout 60 "$BIN" server --data "$WORK/data" coap-credential "$1" $2 >"$WORK/$1.cred"
  # RFC 8240 §3: the identity the handshake shows names no device.
  grep -q "$1" "$WORK/$1.cred" && fail "the credential names the device"
  sed -n 's/^identity: //p' "$WORK/$1.cred" >"$WORK/$1.id"
  sed -n 's/^key: //p' "$WORK/$1.cred" >"$WORK/$1.key"
}
cred coap-libcoap ""
# aiocoap's DTLS (tinydtls) holds at most 16 bytes of key.
cred coap-aiocoap --short-key
L_ID=$(cat "$WORK/coap-libcoap.id")
L_KEY=$(cat "$WORK/coap-libcoap.key")
ok "release $RELEASE, two devices with CoAP credentials"

# libcoap: discovery, and the device resources refused without DTLS.
timeout 20 "$COAP_CLIENT" -B 10 -m get "coap://127.0.0.1:$COAP_PORT/.well-known/core" >"$WORK/core" 2>&1
grep -q '</d/offer>;rt="suitcase.offer";obs' "$WORK/core" || fail "coap-client discovery: $(cat "$WORK/core")"
ok "coap-client discovery over coap:// ($(tr ',' '\n' <"$WORK/core" | wc -l) resources)"
timeout 20 "$COAP_CLIENT" -B 10 -m post -t 60 -e x "coap://127.0.0.1:$COAP_PORT/d/checkin" >"$WORK/unauth" 2>&1 || true
grep -q '4.01' "$WORK/unauth" || fail "plain check-in was not refused 4.01: $(cat "$WORK/unauth")"
ok "coap-client check-in without DTLS refused: $(head -c 60 "$WORK/unauth")…"
timeout 20 "$COAP_CLIENT" -B 10 -m get -u "$L_ID" -k "wrong-key-$L_KEY" \
  "coaps://127.0.0.1:$COAPS_PORT/d/offer" >"$WORK/badkey" 2>&1 || true
grep -q 'check_in' "$WORK/badkey" && fail "a wrong PSK was served"
ok "coap-client with a wrong PSK gets nothing"

# Both clients observe their device's offer; then a campaign offers the release.
# -s 40: the observation must outlast the wait for aiocoap (up to 30 s) and the campaign.
timeout 60 "$COAP_CLIENT" -B 20 -s 40 -u "$L_ID" -k "$L_KEY" -o "$WORK/observed" \
  "coaps://127.0.0.1:$COAPS_PORT/d/offer" >"$WORK/observe.log" 2>&1 &
OBSERVER=$!
PIDS+=($OBSERVER)
timeout 90 python3 "$ROOT/scripts/coap-aiocoap.py" "$COAP_PORT" "$COAPS_PORT" \
  "$(cat "$WORK/coap-aiocoap.id")" "$(cat "$WORK/coap-aiocoap.key")" "$WORK/app.bin" "$WORK/ready" \
  >"$WORK/aiocoap.log" 2>&1 &
AIOCOAP=$!
PIDS+=($AIOCOAP)
for _ in $(seq 1 300); do [ -e "$WORK/ready" ] && break; sleep 0.1; done
[ -e "$WORK/ready" ] || { cat "$WORK/aiocoap.log" >&2; fail "aiocoap did not register its observation"; }
sleep 1
timeout 60 "$BIN" fleet campaign create --release "$RELEASE" --tag coap --start >/dev/null
ok "campaign started"
wait "$AIOCOAP" || { cat "$WORK/aiocoap.log" >&2; fail "aiocoap"; }
sed 's/^/  /' "$WORK/aiocoap.log"
# The observer ends after -s 40 at the latest; stop waiting once it has seen the offer.
for _ in $(seq 1 600); do
  kill -0 "$OBSERVER" 2>/dev/null || break
  python3 -c 'import sys; sys.exit(0 if b"\xa1\x68check_in\xf5" in open(sys.argv[1], "rb").read() else 1)' \
    "$WORK/observed" 2>/dev/null && break
  sleep 0.1
done
kill "$OBSERVER" 2>/dev/null || true
wait "$OBSERVER" || true
# CBOR {"check_in": true}: a1 68 "check_in" f5.
python3 - "$WORK/observed" <<'PY' || { cat "$WORK/observe.log" >&2; fail "coap-client observed no offer"; }
import sys
data = open(sys.argv[1], "rb").read()
sys.exit(0 if b"\xa1\x68check_in\xf5" in data else 1)
PY
ok "coap-client observed the offer change (Observe, RFC 7641)"

# libcoap: check-in, the payload block-wise at 256 bytes, a report.
python3 -c 'import cbor2,sys; sys.stdout.buffer.write(cbor2.dumps({}))' >"$WORK/checkin.cbor"
timeout 20 "$COAP_CLIENT" -B 10 -m post -t 60 -f "$WORK/checkin.cbor" -u "$L_ID" -k "$L_KEY" \
  -o "$WORK/answer.cbor" "coaps://127.0.0.1:$COAPS_PORT/d/checkin" >"$WORK/checkin.log" 2>&1
URL=$(python3 -c 'import cbor2,sys; a=cbor2.load(open(sys.argv[1],"rb")); print(a["update"]["payloads"][0]["url"])' "$WORK/answer.cbor") \
  || fail "check-in answer: $(cat "$WORK/checkin.log")"
ok "coap-client check-in: offered $URL"
start=$SECONDS
timeout 60 "$COAP_CLIENT" -B 50 -m get -b 256 -u "$L_ID" -k "$L_KEY" -o "$WORK/got.bin" \
  "coaps://127.0.0.1:$COAPS_PORT$URL" >"$WORK/get.log" 2>&1 || fail "download: $(cat "$WORK/get.log")"
want=$(sha256sum <"$WORK/app.bin" | cut -d' ' -f1)
have=$(sha256sum <"$WORK/got.bin" | cut -d' ' -f1)
[ "$want" = "$have" ] || fail "coap-client download: SHA-256 $have, uploaded $want"
ok "coap-client fetched $(stat -c %s "$WORK/got.bin") bytes in 256-byte blocks over coaps in $((SECONDS - start)) s, SHA-256 $have"
python3 -c 'import cbor2,sys; sys.stdout.buffer.write(cbor2.dumps({"release_id": sys.argv[1], "step": "receive", "outcome": "success"}))' \
  "$RELEASE" >"$WORK/report.cbor"
timeout 20 "$COAP_CLIENT" -B 10 -m post -t 60 -f "$WORK/report.cbor" -u "$L_ID" -k "$L_KEY" \
  "coaps://127.0.0.1:$COAPS_PORT/d/reports" >"$WORK/report.log" 2>&1
grep -q '^[45]\.' "$WORK/report.log" && fail "report: $(cat "$WORK/report.log")"
# Both devices' reports are in their timelines (through the HTTP management API).
for d in coap-libcoap coap-aiocoap; do
  timeout 60 "$BIN" fleet --json device show "$d" >"$WORK/$d.json"
  grep -q '"receive"' "$WORK/$d.json" || fail "$d: no receive step in its timeline: $(cat "$WORK/$d.json")"
done
ok "both devices' reports are in their timelines"
echo "coap-test: all passed"
