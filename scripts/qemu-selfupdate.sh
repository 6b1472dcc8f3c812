#!/usr/bin/env bash
# A Cortex-M4 (QEMU mps2-an386) that updates itself from a real `suitcase server` campaign
# through the gateway agent (issue 19 item 3; docs/qemu.md "Self-update through the gateway",
# docs/gateway.md §2):
#
#   suitcase server ──HTTP── suitcase agent --gateway ──UNIX socket── QEMU UART1 ── mps2-app
#                                                        CoAP in SLIP frames + FCS-16
#
# Prints one line per passing scenario:
#   ok: self-update-full               v1 checks in, downloads the envelope block-wise,
#                                      authenticates it, streams the payload into slot B,
#                                      stages it; the bootloader swaps it in on trial; v2
#                                      confirms; the campaign completes and the device's steps
#                                      are in the server's timeline (CLI --json).
#   ok: self-update-encrypted          the same with an encrypted release (AES-KW + AES-CTR,
#                                      `release build --encrypt-for`): the device holds the
#                                      key-encryption key in its device key partition and
#                                      decrypts block by block.
#   ok: self-update-delta              the same with a suitcase-delta patch from v1's image
#                                      (`release build --delta-from`), applied on the device.
#   ok: self-update-kek-not-in-image   the key-encryption key is provisioned into the device
#                                      key partition (mps2-flash provision-key), and no
#                                      plaintext release image carries it (RFC 9124
#                                      REQ.SEC.IMG.CONFIDENTIALITY).
#   ok: self-update-revert-reported    v2 staged, not confirmed on trial: the bootloader reverts
#                                      it; slot B's copy cut short (a download cut after its
#                                      envelope) is no refusal: v2 is downloaded again; reverted
#                                      again, the next boot reports `activate` failure (reason
#                                      `condition`) once and does not download v2 again.
#   ok: self-update-untrusted-refused  a release signed by a key the device does not trust
#                                      (the server trusts it) is refused at check, reason
#                                      `signature` (the canonical code), and the wire between QEMU and the
#                                      gateway (scripts/serial-tap.py) carried no payload GET.
#
# Called by scripts/qemu-test.sh (which has built the suitcase CLI and mps2-flash); by hand:
#   SUITCASE_BIN=target/debug/suitcase SUITCASE_QEMU_OUT=/tmp/thumb scripts/qemu-selfupdate.sh
# Environment: SUITCASE_BIN (required), SUITCASE_QEMU_OUT (work directory, default
# target/thumb; the firmware is built in its cargo/), SUITCASE_SELFUPDATE_KEY and
# SUITCASE_SELFUPDATE_BOOTLOADER (below). Every wait is bounded; the server and
# the gateway are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUITCASE=$(realpath "${SUITCASE_BIN:?SUITCASE_BIN: a built suitcase CLI}")
OUT=${SUITCASE_QEMU_OUT:-$ROOT/target/thumb}
WORK=$OUT/selfupdate
TARGET=thumbv7em-none-eabihf
OBJCOPY=/usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-objcopy
ELF_DIR=$OUT/cargo/$TARGET/release
rm -rf "$WORK"
mkdir -p "$WORK"

thumb_cargo() {
  if declare -F heal_dev_null >/dev/null; then heal_dev_null; fi
  (cd "$ROOT/firmware" &&
    PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$OUT/cargo" \
      RUSTFLAGS="-D warnings --cfg sha2_backend_soft=\"compact\"" \
      /usr/bin/cargo "$@")
}

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$WORK"/*.log; do
    [ -f "$f" ] || continue
    echo "  --- $f (last 30 lines)"
    tail -30 "$f" | sed 's/^/  | /'
  done
  exit 1
}

# --- firmware: the bootloader and the application trust the same release key -------------
# qemu-test.sh hands over its ES256 key and the bootloader it built for it
# (SUITCASE_SELFUPDATE_KEY: the path without .key/.pub; SUITCASE_SELFUPDATE_BOOTLOADER), which
# saves a bootloader build; run alone, the script makes its own.
if [ -n "${SUITCASE_SELFUPDATE_KEY:-}" ] && [ -n "${SUITCASE_SELFUPDATE_BOOTLOADER:-}" ]; then
  cp "$SUITCASE_SELFUPDATE_KEY.key" "$WORK/release.key"
  cp "$SUITCASE_SELFUPDATE_KEY.pub" "$WORK/release.pub"
  cp "$SUITCASE_SELFUPDATE_BOOTLOADER" "$WORK/bootloader.elf"
else
  "$SUITCASE" key generate --alg es256 --format cose -o "$WORK/release.key" --public "$WORK/release.pub" >/dev/null
  SUITCASE_TRUST_ANCHOR="$WORK/release.pub" \
    thumb_cargo build -q -j2 --release -Zbuild-std=core --target $TARGET -p mps2-bootloader --features es256
  cp "$ELF_DIR/mps2-bootloader" "$WORK/bootloader.elf"
fi
"$SUITCASE" key generate --alg es256 --format cose -o "$WORK/untrusted.key" --public "$WORK/untrusted.pub" >/dev/null
# The payload key-encryption key (AES-KW) the device holds, for the encrypted release: not
# built into the image (which every release carries in clear) but provisioned into mcu-3's
# device key partition below (mps2-flash provision-key).
"$SUITCASE" key generate --alg a128kw -o "$WORK/kek.key" --public "$WORK/kek.pub" >/dev/null
for version in 1.0.0 2.0.0; do
  APP_VERSION=$version APP_TRUST_ANCHOR="$WORK/release.pub" \
    thumb_cargo build -q -j2 --release -Zbuild-std=core --target $TARGET -p mps2-app --features gateway
  "$OBJCOPY" -O binary "$ELF_DIR/mps2-app" "$WORK/app-$version.bin"
  cp "$ELF_DIR/mps2-app" "$WORK/app-$version.elf"
done
thumb_cargo build -q -j2 --release -p mps2-flash
FLASHTOOL=$OUT/cargo/release/mps2-flash
echo "self-update: firmware built in $SECONDS s"

# release VERSION SEQUENCE KEY OUT [OPTION...]: a signed envelope for app VERSION.
release() {
  local version=$1 sequence=$2 key=$3 out=$4
  shift 4
  "$SUITCASE" release build --image "$WORK/app-$version.bin" --component 00 \
    --vendor example.com --class mps2-an386 --sequence "$sequence" \
    --uri "coap://gateway/mps2/$out.bin" --profile "${PROFILE:-basic}" --sign "$WORK/$key.key" -o "$WORK/$out.suit" "$@" >/dev/null
}
release 1.0.0 1 release v1
release 2.0.0 2 release v2
release 2.0.0 3 untrusted rogue
# AES-KW (A128KW) wraps a fresh content key; the payload is AES-CTR (A128CTR) ciphertext
# (the Upgraded tier: the Basic one sends plaintext; it signs ESP256).
PROFILE=upgraded release 2.0.0 2 release v2-encrypted --encrypt-for "$WORK/kek.key" --content a128ctr \
  --payload-out "$WORK/v2-encrypted.bin"
# A suitcase-delta patch from v1's image (the one in slot A) to v2's; the manifest names v1's
# image by digest as the patch's base.
release 2.0.0 2 release v2-delta --delta-from "$WORK/app-1.0.0.bin" --payload-out "$WORK/v2-delta.bin"
"$FLASHTOOL" pack --envelope "$WORK/v1.suit" --image "$WORK/app-1.0.0.bin" -o "$WORK/v1.slot"
for d in mcu-1 mcu-2 mcu-3 mcu-4 mcu-5; do "$FLASHTOOL" init --slot "$WORK/v1.slot" -o "$WORK/$d.flash"; done
# The factory provisions mcu-3's key-encryption key outside the slots; the others have none.
"$FLASHTOOL" provision-key --flash "$WORK/mcu-3.flash" --key "$WORK/kek.key" >/dev/null
# RFC 9124 REQ.SEC.IMG.CONFIDENTIALITY: no plaintext release (v1, v2, the delta's base) may
# carry the key-encryption key: its raw AES key (COSE_Key label -1) is in no image.
python3 - "$WORK/kek.key" "$WORK/app-1.0.0.bin" "$WORK/app-2.0.0.bin" "$WORK/v2-delta.bin" <<'PY' ||
import sys
cose = open(sys.argv[1], "rb").read()
# -1 (0x20) => bstr of 16 (0x50) or 32 (0x58 0x20) bytes: the symmetric key (RFC 9053 §6.1).
at = cose.find(b"\x20\x50")
k = cose[at + 2:at + 18] if at >= 0 else b""
if len(k) != 16:
    sys.exit(f"no 16-byte key in {sys.argv[1]}")
for image in sys.argv[2:]:
    data = open(image, "rb").read()
    if k in data or cose in data:
        sys.exit(f"{image} carries the key-encryption key")
PY
  fail "self-update-kek-not-in-image: a release image carries the key-encryption key"
echo "ok: self-update-kek-not-in-image (the AES-KW key is in mcu-3's device key partition, in none of v1, v2, the delta)"

# --- the server, its fleet, the gateway -------------------------------------------------
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
RUST_LOG=warn "$SUITCASE" server --data "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  [ -s "$WORK/data/admin-token" ] && curl -fsS --max-time 5 "$BASE/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS --max-time 5 "$BASE/healthz" >/dev/null || fail "the server did not start"
export SUITCASE_SERVER=$BASE SUITCASE_TOKEN
SUITCASE_TOKEN=$(head -n1 "$WORK/data/admin-token")
fleet() { timeout 60 "$SUITCASE" fleet "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# The server trusts both keys; the device only the release key (the rogue release stands
# for a key the server accepts and the device does not: a compromised or foreign signer).
fleet key add release "$WORK/release.pub" >/dev/null
fleet key add untrusted "$WORK/untrusted.pub" >/dev/null
V2=$(fleet --json release upload "$WORK/v2.suit" --payload "$WORK/app-2.0.0.bin" | json 'd["id"]')
ROGUE=$(fleet --json release upload "$WORK/rogue.suit" --payload "$WORK/app-2.0.0.bin" | json 'd["id"]')
ENCRYPTED=$(fleet --json release upload "$WORK/v2-encrypted.suit" --payload "$WORK/v2-encrypted.bin" | json 'd["id"]')
DELTA=$(fleet --json release upload "$WORK/v2-delta.suit" --payload "$WORK/v2-delta.bin" | json 'd["id"]')
token() { fleet --json device add "$1" --tag "$2" | json 'd["token"]'; }
GW_TOKEN=$(token gateway gateway)
MCU1_TOKEN=$(token mcu-1 selfupdate)
MCU2_TOKEN=$(token mcu-2 untrusted)
MCU3_TOKEN=$(token mcu-3 encrypted)
MCU4_TOKEN=$(token mcu-4 delta)
MCU5_TOKEN=$(token mcu-5 revert)

cat >"$WORK/agent.toml" <<EOF
state_dir = "state"
[server]
url = "$BASE"
token = "$GW_TOKEN"
[trust]
anchors = ["release.pub"]
[identity]
vendor = "example.com"
class = "gateway"
[push]
enabled = false
[gateway]
retry_min_seconds = 1
retry_max_seconds = 2
[[gateway.subdevice]]
id = "mcu-1"
socket = "$WORK/mcu-1.sock"
token = "$MCU1_TOKEN"
[[gateway.subdevice]]
id = "mcu-2"
socket = "$WORK/mcu-2.sock"
token = "$MCU2_TOKEN"
[[gateway.subdevice]]
id = "mcu-3"
socket = "$WORK/mcu-3.sock"
token = "$MCU3_TOKEN"
[[gateway.subdevice]]
id = "mcu-4"
socket = "$WORK/mcu-4.sock"
token = "$MCU4_TOKEN"
[[gateway.subdevice]]
id = "mcu-5"
socket = "$WORK/mcu-5.sock"
token = "$MCU5_TOKEN"
[[component]]
name = "app"
id = "617070"
kind = "file"
slots = ["app-a.bin", "app-b.bin"]
pointer = "app.slot"
capacity = 1048576
EOF
(cd "$WORK" && exec "$SUITCASE" agent --config agent.toml --gateway >"$WORK/gateway.log" 2>&1) &
PIDS+=($!)
for _ in $(seq 1 300); do
  [ -S "$WORK/mcu-1.sock" ] && [ -S "$WORK/mcu-2.sock" ] && [ -S "$WORK/mcu-3.sock" ] && [ -S "$WORK/mcu-4.sock" ] && [ -S "$WORK/mcu-5.sock" ] && break
  sleep 0.1
done
[ -S "$WORK/mcu-1.sock" ] && [ -S "$WORK/mcu-2.sock" ] && [ -S "$WORK/mcu-3.sock" ] && [ -S "$WORK/mcu-4.sock" ] && [ -S "$WORK/mcu-5.sock" ] || fail "the gateway did not open its sockets"
# A wire tap between each QEMU and the gateway (scripts/serial-tap.py): it relays the bytes
# unchanged and logs every CoAP request the device sends (code and Uri-Path) to DEVICE.wire,
# the independent record of what the device asked for.
# mcu-1's tap answers its first two reports 5.03 queue-full itself (docs/gateway.md §3): the
# device must keep each and send it again after the Max-Age.
for d in mcu-1 mcu-2 mcu-3 mcu-4 mcu-5; do
  refuse=0
  [ "$d" = mcu-1 ] && refuse=2
  python3 "$ROOT/scripts/serial-tap.py" "$WORK/$d-tap.sock" "$WORK/$d.sock" "$WORK/$d.wire" "$refuse" &
  PIDS+=($!)
done
for _ in $(seq 1 100); do
  [ -S "$WORK/mcu-1-tap.sock" ] && [ -S "$WORK/mcu-2-tap.sock" ] && [ -S "$WORK/mcu-3-tap.sock" ] && [ -S "$WORK/mcu-4-tap.sock" ] && [ -S "$WORK/mcu-5-tap.sock" ] && break
  sleep 0.1
done

CAMPAIGN=$(fleet --json campaign create --release "$V2" --tag selfupdate --start | json 'd["id"]')
fleet --json campaign create --release "$ROGUE" --tag untrusted --start >/dev/null
ENCRYPTED_CAMPAIGN=$(fleet --json campaign create --release "$ENCRYPTED" --tag encrypted --start | json 'd["id"]')
DELTA_CAMPAIGN=$(fleet --json campaign create --release "$DELTA" --tag delta --start | json 'd["id"]')
fleet --json campaign create --release "$V2" --tag revert --start >/dev/null

# power_cycle DEVICE NAME APPEND PATTERN...: one QEMU run of DEVICE (UART0 to the log, UART1
# to the gateway's socket); every PATTERN on UART0, none prefixed '!'.
# Each run is bounded at 120 s: a download of 350 blocks takes 35 s on an idle machine, twice
# that under a load of 7 on 2 cores (five QEMUs, the gateway, the taps and others' builds).
power_cycle() {
  local dev=$1 name=$2 append=$3 status=0
  shift 3
  local log=$WORK/$name.log
  (cd "$WORK" && timeout 120 qemu-system-arm -M mps2-an386 -display none -monitor none -semihosting \
    -serial stdio -serial "unix:$WORK/$dev-tap.sock" \
    -kernel "$WORK/bootloader.elf" -append "flash=$dev.flash $append" </dev/null >"$log" 2>&1) || status=$?
  local failed=()
  [ "$status" -eq 0 ] || failed+=("QEMU exited with status $status (124: timeout)")
  for pattern in "$@"; do
    if [[ $pattern == '!'* ]]; then
      ! grep -qF -- "${pattern#!}" "$log" || failed+=("unexpected line: ${pattern#!}")
    else
      grep -qF -- "$pattern" "$log" || failed+=("missing line: $pattern")
    fi
  done
  if [ ${#failed[@]} -gt 0 ]; then
    printf '  %s\n' "${failed[@]}"
    fail "$name"
  fi
}

# timeline DEVICE: the steps of the device's last update on the server (`fleet device show
# --json`: update.steps), one "step outcome reason" a line.
timeline() {
  fleet --json device show "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for r in (d.get("update") or {}).get("steps") or []:
    print(r["step"], r["outcome"], r.get("reason") or "")'
}

# updated DEVICE NAME RELEASE CAMPAIGN: two power cycles of DEVICE on v1 (download and stage
# RELEASE; on trial, confirm), then the campaign completed and every step in the timeline.
updated() {
  local dev=$1 name=$2 rel=$3 campaign=$4 state=""
  power_cycle "$dev" "$name-1-download" "gateway ${CLOCK_WRAP:-}" \
    "app: hello from version 1.0.0" "app: offered release $rel, sequence 2" \
    "app: envelope authenticated" "app: update staged (pending); resetting" \
    "${DOWNLOAD_EXPECT:-app: update staged}"
  power_cycle "$dev" "$name-2-trial" gateway \
    "boot: verified slot A: security version 2" "boot: booting slot A (trial boot 1 of 1)" \
    "app: hello from version 2.0.0" "app: reported activate success" "app: version 2.0.0 confirmed" \
    "app: reported clean-up success"
  for _ in $(seq 1 150); do
    state=$(fleet --json campaign show "$campaign" | json 'd["state"]')
    [ "$state" = completed ] && break
    sleep 0.2
  done
  [ "$state" = completed ] || fail "$name: campaign $campaign is $state, not completed"
  timeline "$dev" >"$WORK/$dev.timeline"
  for step in "check success" "receive success" "apply success" "reverify success" "stage success" \
    "activate success" "clean-up success"; do
    grep -q "^$step" "$WORK/$dev.timeline" || fail "$name: no '$step' in $dev's timeline: $(tr '\n' ';' <"$WORK/$dev.timeline")"
  done
  # Distinct blocks asked for: a retransmission (RFC 7252 §4.5) or a request repeated after a
  # 5.03 (the gateway was still fetching the payload) asks for the same block again.
  BLOCKS=$(sed -n "s|^0.01 /d/payloads/$rel/\([^ ]*\) block=\([0-9]*\) .*|\1 \2|p" "$WORK/$dev.wire" | sort -u | wc -l)
  local said
  said=$(sed -n 's/.*app: payload blocks requested: \([0-9]*\).*/\1/p' "$WORK/$name-1-download.log")
  [ "$BLOCKS" = "$said" ] || fail "$name: the wire carried $BLOCKS payload GETs, the device says it sent $said"
  STEPS=$(wc -l <"$WORK/$dev.timeline")
  # The download's peak stack, measured on the target (the application paints its stack).
  PEAK=$(sed -n 's/.*app: stack peak \([0-9]*\) bytes.*/\1/p' "$WORK/$name-1-download.log")
  [ -n "$PEAK" ] || fail "$name: the application printed no stack peak"
}

# The payload is served as ciphertext; the device unwraps the content key with its AES-KW key
# and decrypts block by block into slot B; the bootloader then verifies the plaintext image.
cmp -s "$WORK/v2-encrypted.bin" "$WORK/app-2.0.0.bin" && fail "self-update-encrypted: the payload is not encrypted"
# A delta release's payload is a suitcase-delta patch the device applies against slot A's
# image block by block into slot B (the consumer core's delta path); image-match checks it.
# The three updates run at once (their own sockets, flash files and campaigns; QEMU mostly
# waits on the link), each in a subshell that writes its figures to NAME.result.
updated_bg() {
  (updated "$@" && echo "$BLOCKS $STEPS $PEAK" >"$WORK/$2.result") &
}
# The full update's download starts 2 s before the link's 32-bit timer wraps (the app's
# `clock-wrap`): the session must cross the wrap without hanging (it used to wait ~171 s).
DOWNLOAD_EXPECT="app: report check answered 5.03 (attempt 1 of 4); sending it again in 1 s" \
  CLOCK_WRAP=clock-wrap updated_bg mcu-1 full "$V2" "$CAMPAIGN"
FULL=$!
updated_bg mcu-3 encrypted "$ENCRYPTED" "$ENCRYPTED_CAMPAIGN"
ENCRYPTED_PID=$!
updated_bg mcu-4 delta "$DELTA" "$DELTA_CAMPAIGN"
DELTA_PID=$!

# --- self-update-revert-reported: the bootloader reverts the update (v2 not confirmed on
# trial); the next boot reports `activate` failure with the reason and does not download the
# same release again; the server then stops offering it.
# First a download cut short after the revert: the bootloader reverts v2 (a boot without the
# gateway), then the tail of v2's image in slot B is erased, as a download of that release cut
# after its header, envelope and first blocks leaves it (Updater::begin erases, the consumer
# writes in order) while last_failure is still set: that is no refusal, v2 is downloaded again.
revert_cut() {
  python3 - "$WORK/mcu-5.flash" <<'PY'
import struct, sys
path = sys.argv[1]
flash = bytearray(open(path, "rb").read())
at = 0x42000 + 4096  # layout.rs SLOT_B, one sector in (swap-offset)
if flash[at:at + 4] != b"SUIT":
    sys.exit("no slot image in slot B")
offset, length = struct.unpack_from("<II", flash, at + 12)
end = at + offset + length
if flash[end - 512:end] == b"\xff" * 512:
    sys.exit("the image's last 512 bytes are already erased")
flash[end - 512:end] = b"\xff" * 512
open(path, "wb").write(flash)
PY
}
reverted() {
  power_cycle mcu-5 revert-1-download gateway \
    "app: offered release $V2, sequence 2" "app: update staged (pending); resetting"
  power_cycle mcu-5 revert-2-trial "gateway no-confirm" \
    "app: hello from version 2.0.0" "not confirming" "!app: reported"
  power_cycle mcu-5 revert-3-reverted "" "app: hello from version 1.0.0"
  revert_cut || fail "self-update-revert-reported: cannot cut slot B's image short"
  power_cycle mcu-5 revert-4-cut gateway \
    "app: hello from version 1.0.0" "no complete authentic image there" \
    "app: offered release $V2, sequence 2" "app: envelope authenticated" \
    "app: update staged (pending); resetting" "!not downloading it again"
  power_cycle mcu-5 revert-5-trial "gateway no-confirm" \
    "app: hello from version 2.0.0" "not confirming" "!app: reported"
  power_cycle mcu-5 revert-6-reverted gateway \
    "app: hello from version 1.0.0" "app: offered release $V2, sequence 2" \
    "the bootloader did not keep it: trial image not confirmed; reverted; not downloading it again" \
    "app: reported activate failure" "!app: envelope" "!payload blocks requested"
  power_cycle mcu-5 revert-7-after gateway \
    "app: hello from version 1.0.0" "app: checked in: no update offered"
  local envelopes
  envelopes=$(sed -n "s|^0.01 /d/releases/$V2/envelope block=0 mid=\([0-9]*\)|\1|p" "$WORK/mcu-5.wire" | sort -u | wc -l)
  [ "$envelopes" = 2 ] || fail "self-update-revert-reported: mcu-5 asked for the reverted release's envelope $envelopes times (2: the first download and the one after the cut)"
  timeline mcu-5 >"$WORK/mcu-5.timeline"
  grep -q "^activate failure condition" "$WORK/mcu-5.timeline" ||
    fail "self-update-revert-reported: no 'activate failure condition' in mcu-5's timeline: $(tr '\n' ';' <"$WORK/mcu-5.timeline")"
}
(reverted && echo ok >"$WORK/revert.result") &
REVERT_PID=$!

# --- self-update-untrusted-refused ----------------------------------------------------------
power_cycle mcu-2 untrusted-1 gateway \
  "app: hello from version 1.0.0" "app: offered release $ROGUE, sequence 3" \
  "refused before download: the envelope is not authentic" "payload blocks requested: 0" \
  "app: reported check failure" "!app: update staged"
power_cycle mcu-2 untrusted-2 "" \
  "boot: booting slot A (confirmed)" "app: hello from version 1.0.0" "!app: hello from version 2.0.0"
# The wire's record of mcu-2's requests: check-in, the envelope, the report; no payload block.
grep -q "^0.01 /d/releases/$ROGUE/envelope" "$WORK/mcu-2.wire" ||
  fail "self-update-untrusted-refused: no envelope GET on mcu-2's wire: $(tr '\n' ';' <"$WORK/mcu-2.wire")"
if grep -q "/d/payloads/" "$WORK/mcu-2.wire"; then
  fail "self-update-untrusted-refused: mcu-2 requested a payload block of a release it refused: $(grep -c /d/payloads/ "$WORK/mcu-2.wire") GETs"
fi
for _ in $(seq 1 100); do
  timeline mcu-2 >"$WORK/mcu-2.timeline"
  grep -q "^check failure signature" "$WORK/mcu-2.timeline" && break
  sleep 0.2
done
grep -q "^check failure signature" "$WORK/mcu-2.timeline" ||
  fail "self-update-untrusted-refused: no 'check failure signature' in mcu-2's timeline: $(tr '\n' ';' <"$WORK/mcu-2.timeline")"
echo "ok: self-update-untrusted-refused (check failure, reason signature (the canonical code the server quarantines on), in the server's timeline; on the wire: $(wc -l <"$WORK/mcu-2.wire") requests, the envelope GET and no payload GET)"

status=0
wait "$FULL" || status=1
wait "$ENCRYPTED_PID" || status=1
wait "$DELTA_PID" || status=1
wait "$REVERT_PID" || status=1
[ "$status" -eq 0 ] || fail "an update scenario failed (its FAIL lines above)"
read -r BLOCKS STEPS PEAK <"$WORK/full.result"
[ "$(grep -c '^tap: 5.03' "$WORK/mcu-1.wire")" = 2 ] ||
  fail "self-update-full: the tap did not answer two reports 5.03: $(grep -c '^tap: 5.03' "$WORK/mcu-1.wire")"
SESSION=$(sed -n 's/.*app: session with the gateway: \([0-9]*\) ms.*/\1/p' "$WORK/full-1-download.log")
grep -qF "app: clock-wrap: timer 0 wraps in 2000 ms" "$WORK/full-1-download.log" && [ "${SESSION:-0}" -gt 2000 ] ||
  fail "self-update-full: the download did not cross the timer's wrap (session ${SESSION:-?} ms, clock-wrap line missing?)"
echo "ok: self-update-full (v1 -> v2: $BLOCKS payload blocks of 512 bytes over CoAP/SLIP across the link timer's wrap ($SESSION ms session, the timer wrapped at 2000 ms), campaign completed, $STEPS steps in the server's timeline although its first two reports were answered 5.03 queue-full and sent again, stack peak $PEAK bytes)"
read -r BLOCKS STEPS PEAK <"$WORK/encrypted.result"
echo "ok: self-update-encrypted (A128KW + A128CTR: $BLOCKS ciphertext blocks decrypted into slot B, campaign completed, $STEPS steps in the server's timeline, stack peak $PEAK bytes)"
read -r BLOCKS STEPS PEAK <"$WORK/delta.result"
echo "ok: self-update-delta ($(stat -c %s "$WORK/v2-delta.bin")-byte patch for a $(stat -c %s "$WORK/app-2.0.0.bin")-byte image: $BLOCKS blocks, applied against slot A into slot B, campaign completed, $STEPS steps in the server's timeline, stack peak $PEAK bytes)"
echo "ok: self-update-revert-reported (v2 staged, not confirmed on trial, reverted by the bootloader; slot B's copy cut short (its last 512 bytes erased) was no refusal: v2 downloaded and staged again; reverted again, the next boot reported activate failure, reason condition, and did not download it again: two envelope GETs on the wire; the boot after that was offered nothing)"
echo "self-update: every scenario passed in $SECONDS s"
