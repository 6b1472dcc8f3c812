# shellcheck shell=bash
# Power cuts during the application's own download (issue 19 item 4; docs/qemu.md, "Power
# cuts on the target"): sourced by scripts/qemu-powercut.sh after its scenarios, with its
# functions (pc_sweep, pc_outcome, ...) and qemu-test.sh's keys, $SUITCASE, $FLASHTOOL,
# `thumb_cargo`, `step`.
#
#   suitcase server ──HTTP── suitcase agent --gateway ──UNIX socket── QEMU UART1 ── mps2-app
#
# The application that updates itself (`mps2-app --features gateway`, v1, sequence 1) built
# with the board's `power-cut` feature (`--features gateway,mps2-board/power-cut`), under the
# power-cut bootloader, downloads a release from a real `suitcase server` campaign through
# `suitcase agent --gateway` (the set-up of scripts/qemu-selfupdate.sh, in brief here) and
# writes it into slot B block by block, then records it pending. The power is cut in that
# power cycle, at operation N of the application's flash writes (PC_POINTS=dl_points below):
# the first erase of slot B (whole and torn), the program of the middle payload block and the
# last program of slot B (whole), and every operation on the state partition (the pending
# record's erase and program, whole and torn). After the cut the device restarts (`gateway` on every run) until it settles: it must
# boot a verified image (the old one, or the new one when the pending record was complete),
# and one left on the old image must download the release again by itself on its next run
# (the server offers it again: the device checks in at sequence 1; each cut point has a
# device of its own, so no earlier cut's reports count) and end confirmed on the new version
# with the anti-rollback minimum at its sequence number.
#
# The release is the small application (the `power-cut` build without `gateway`, 2.0.0,
# about 11 kB, 22 blocks of 512 bytes), not the 172 kB update client: a download per restart
# of 344 blocks would take the part far over a minute. It confirms itself when it boots on
# trial and does not check in, so the campaign stays in progress (the self-update scenarios
# check the campaign's end).
#
# One line: `ok: power-cut-download cuts=N old=a new=b retried=r bricked=0 mixed=0 wrong=0
# rollback=0 (...)`, and the part's time; else FAIL and exit 1.

dl_began=$SECONDS
DL=$PC/download
rm -rf "$DL"
mkdir -p "$DL"
# Devices (sub-devices of the gateway, one per cut point and one for the uncut run).
DL_DEVICES=${DL_DEVICES:-16}

step "power cuts during the application's own download: the update client with the power-cut hook"
APP_VERSION=1.0.0 APP_TRUST_ANCHOR="$RUN/keys/es256.pub" thumb_cargo build -q -j2 --release -Zbuild-std=core \
  --target "$TARGET" -p mps2-app --features gateway,mps2-board/power-cut
"$OBJCOPY" -O binary "$ELF_DIR/mps2-app" "$DL/app-1.0.0.bin"
cp "$RUN/app-cut-2.0.0.bin" "$DL/app-2.0.0.bin"
dl_built=$SECONDS

# dl_release VERSION SEQUENCE OUT: a signed envelope for DL/app-VERSION.bin, packed into a slot.
dl_release() {
  "$SUITCASE" release build --image "$DL/app-$1.bin" --component 00 --vendor example.com \
    --class mps2-an386 --sequence "$2" --uri "coap://gateway/mps2/$3.bin" --profile basic \
    --sign "$RUN/keys/es256.key" -o "$DL/$3.suit" >/dev/null
  "$FLASHTOOL" pack --envelope "$DL/$3.suit" --image "$DL/app-$1.bin" -o "$DL/$3.slot" >/dev/null
}
dl_release 1.0.0 1 v1
dl_release 2.0.0 2 v2
# What the device writes into slot B is the packed slot image but for the gap between the
# envelope and the image, which it leaves erased (0xFF; `mps2-flash pack` fills it with
# zeros): after the swap, slot A must hold that byte for byte.
python3 - "$DL/v2.slot" "$DL/v2-device.slot" <<'PY'
import struct, sys
slot = open(sys.argv[1], "rb").read()
envelope_len, image_offset = struct.unpack_from("<II", slot, 8)
end = 32 + envelope_len
open(sys.argv[2], "wb").write(slot[:end] + b"\xff" * (image_offset - end) + slot[image_offset:])
PY

dl_pids=()
dl_stop() {
  local p
  for p in "${dl_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${dl_pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  dl_pids=()
}
trap dl_stop EXIT
dl_fail() {
  echo "FAIL: power-cut-download: $*"
  for f in "$DL/server.log" "$DL/gateway.log"; do
    echo "  --- $f (last 20 lines)"
    tail -20 "$f" | sed 's/^/  | /'
  done
  exit 1
}

# --- the server, the devices, the campaign, the gateway --------------------------------------
dl_port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
RUST_LOG=warn "$SUITCASE" server --data "$DL/data" --listen "127.0.0.1:$dl_port" >"$DL/server.log" 2>&1 &
dl_pids+=($!)
for _ in $(seq 1 300); do
  [ -s "$DL/data/admin-token" ] && curl -fsS --max-time 5 "http://127.0.0.1:$dl_port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS --max-time 5 "http://127.0.0.1:$dl_port/healthz" >/dev/null 2>&1 || dl_fail "the server did not start"
dl_fleet() {
  SUITCASE_SERVER=http://127.0.0.1:$dl_port SUITCASE_TOKEN=$(head -n1 "$DL/data/admin-token") \
    timeout 60 "$SUITCASE" fleet "$@"
}
dl_json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
dl_fleet key add release "$RUN/keys/es256.pub" >/dev/null
dl_v2=$(dl_fleet --json release upload "$DL/v2.suit" --payload "$DL/app-2.0.0.bin" | dl_json 'd["id"]')
{
  echo 'state_dir = "state"'
  echo '[server]'
  echo "url = \"http://127.0.0.1:$dl_port\""
  echo "token = \"$(dl_fleet --json device add gateway --tag gateway | dl_json 'd["token"]')\""
  printf '[trust]\nanchors = ["%s"]\n' "$RUN/keys/es256.pub"
  printf '[identity]\nvendor = "example.com"\nclass = "gateway"\n[push]\nenabled = false\n'
  printf '[gateway]\nretry_min_seconds = 1\nretry_max_seconds = 2\n'
  for k in $(seq 0 $((DL_DEVICES - 1))); do
    printf '[[gateway.subdevice]]\nid = "dl-%s"\nsocket = "%s"\n' "$k" "$DL/dl-$k.sock"
    echo "token = \"$(dl_fleet --json device add "dl-$k" --tag download | dl_json 'd["token"]')\""
  done
  printf '[[component]]\nname = "app"\nid = "617070"\nkind = "file"\nslots = ["app-a.bin", "app-b.bin"]\n'
  printf 'pointer = "app.slot"\ncapacity = 1048576\n'
} >"$DL/agent.toml"
dl_fleet campaign create --release "$dl_v2" --tag download --start >/dev/null
(cd "$DL" && exec "$SUITCASE" agent --config agent.toml --gateway >"$DL/gateway.log" 2>&1) &
dl_pids+=($!)
for _ in $(seq 1 300); do
  [ -S "$DL/dl-$((DL_DEVICES - 1)).sock" ] && break
  sleep 0.1
done
[ -S "$DL/dl-$((DL_DEVICES - 1)).sock" ] || dl_fail "the gateway did not open its sockets"

# --- the flash before the download: v1 (the update client) confirmed --------------------------
PC_FLASH=$DL/flash.bin
PC_OLD_SLOT=$DL/v1.slot PC_NEW_SLOT=$DL/v2-device.slot
PC_OLD_SEQUENCE=1 PC_NEW_SEQUENCE=2
"$FLASHTOOL" init --slot "$PC_OLD_SLOT" -o "$PC_FLASH" >/dev/null
pc_qemu "$DL/factory.log" "" || dl_fail "the factory boot of v1 failed ($DL/factory.log)"
grep -q "^app: running from slot A, phase confirmed" "$DL/factory.log" ||
  dl_fail "v1 did not run confirmed at the factory boot ($DL/factory.log)"
cp "$PC_FLASH" "$DL/v1.bin"

# dl_next_device (PC_BEFORE_CUT): the next cut point's device: QEMU's UART1 to its socket.
dl_device=-1
dl_next_device() {
  dl_device=$((dl_device + 1))
  [ "$dl_device" -lt "$DL_DEVICES" ] || dl_fail "more cut points than the $DL_DEVICES devices (DL_DEVICES)"
  PC_QEMU_IO="-display none -monitor none -serial stdio -serial unix:$DL/dl-$dl_device.sock"
}

# dl_restage (PC_RESTAGE): nothing to stage from the host: the device settled on v1 with
# `gateway` on its command line, checked in, was offered the release again and downloaded
# and staged it in that same run; the next restarts install it. Fails if that run did not.
dl_restage() {
  grep -q "^app: update staged (pending); resetting" "$PC_SETTLED_LOG" ||
    { echo "the settled v1 run did not download the release again ($PC_SETTLED_LOG)"; return 1; }
}

# dl_points TRACE (PC_POINTS): the first erase of slot B whole and torn, the program of slot
# B in the middle of the programs and the last one whole (a torn payload block leaves slot B
# as unfinished as a whole one: no pending record either way), and every operation on the
# state partition (the pending record's erase and program) whole and torn: 8 cuts, about 55 s
# on the development machine's loaded cores.
dl_points() {
  sed -n 's/^flash: op \([0-9]*\) \([a-z]*\) \([a-z-]*\)+.*/\1 \2 \3/p' "$1" | awk '
    $3 == "slot-b" && $2 == "erase" && !erase { erase = $1 }
    $3 == "slot-b" && $2 == "program" { programs[++n] = $1 }
    $3 == "state" { print $1; print $1 " torn" }
    END {
      if (erase) { print erase; print erase " torn" }
      if (n) { print programs[int((n + 1) / 2)]; print programs[n] }
    }' | sort -n -k1,1 -k2,2 | uniq
}

dl_swept=$SECONDS
PC_BEFORE_CUT=dl_next_device PC_RESTAGE=dl_restage PC_POINTS=dl_points \
  PC_POINTS_SAID="the first erase of slot B whole and torn, its middle and last program whole, the pending record's erase and program whole and torn" \
  pc_sweep download "$DL/v1.bin" gateway "old new" 1
dl_stop
trap - EXIT
echo "power cuts during the download: $((SECONDS - dl_began)) s ($((dl_built - dl_began)) s building the update client, $((dl_swept - dl_built)) s setting up the server and gateway, $((SECONDS - dl_swept)) s cutting)"
