#!/usr/bin/env bash
# A real boot of the GRUB backend (docs/bootloaders.md, "Proven in QEMU with a real kernel"):
# Debian's GRUB (grub-pc-bin, BIOS) in qemu-system-x86_64 runs the shipped
# docs/bootloaders/grub.cfg, which boots one of two slots, each a Debian kernel with the
# slot's own initramfs (busybox, the slot's agent.toml and health check). The initramfs runs
# `suitcase agent --once` against a real `suitcase server` on the host (QEMU user networking:
# the host's 127.0.0.1 is 10.0.2.2 for the guest), which installs a release into the other
# slot's initramfs file and reboots; QEMU runs with -no-reboot, so a reboot ends the QEMU
# process and this script powers the machine on again, like a power cycle.
#
#   1. slot A boots (first boot, GRUB's defaults); the agent installs release 1 into slot B,
#      puts it on trial with grub-editenv and reboots;
#   2. GRUB boots B on trial; the health check passes, the agent confirms; the campaign
#      completes;
#   3. release 2 (an initramfs whose init dies: the kernel panics, panic=1 reboots) goes into
#      slot A and on trial; GRUB tries A three times, each attempt a real boot that counts
#      down BOOT_A_LEFT, then falls back to B; the agent on B reads the fallback back and
#      reports `reverted`; the campaign ends rolled back;
#   4. release 3 (an initramfs whose health check fails) goes into slot A and on trial; A
#      boots, the health check fails, the agent reverts the environment, reports and reboots;
#      B boots again.
# After each boot the grubenv on the disk image is read with `grub-editenv list` (through
# debugfs, no root or loop device needed) and the server's view with `suitcase fleet`.
#
# Usage: scripts/grub-qemu-test.sh [SUITCASE_BIN]   (default target/debug/suitcase)
# Needs: qemu-system-x86 grub-pc-bin grub-common busybox-static e2fsprogs cpio curl python3,
# and apt's package lists: Debian's kernel package (linux-image-amd64's dependency) is
# fetched with `apt-get download` and unpacked into the work directory, not installed.
# Without the tools it prints SKIP and exits 0, unless SUITCASE_REQUIRE_GRUB_QEMU=1 (CI).
# QEMU emulates the CPU (TCG): no KVM is assumed. Every boot runs under `timeout`.
# Environment: SUITCASE_GRUB_QEMU_OUT (work directory, default target/grub-qemu; the kernel
# package stays cached in its cache/), SUITCASE_GRUB_QEMU_TIMEOUT (seconds per boot, default
# 240).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
script_start=$SECONDS

BIN=${1:-${SUITCASE_BIN:-target/debug/suitcase}}
OUT=${SUITCASE_GRUB_QEMU_OUT:-$ROOT/target/grub-qemu}
BOOT_TIMEOUT=${SUITCASE_GRUB_QEMU_TIMEOUT:-240}
GRUB_DIR=/usr/lib/grub/i386-pc

missing=()
for tool in apt-get dpkg-deb qemu-system-x86_64 grub-mkimage grub-editenv grub-script-check mke2fs debugfs cpio curl python3 objcopy; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -f "$GRUB_DIR/boot.img" ] || missing+=("grub-pc-bin ($GRUB_DIR)")
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod || missing+=("busybox-static")
if [ ${#missing[@]} -gt 0 ]; then
  msg="GRUB QEMU boot test: missing ${missing[*]}; install with: apt-get install -y qemu-system-x86 grub-pc-bin grub-common busybox-static e2fsprogs cpio curl python3 binutils"
  if [ "${SUITCASE_REQUIRE_GRUB_QEMU:-0}" = 1 ]; then
    echo "FAIL: $msg" >&2
    exit 1
  fi
  echo "SKIP: $msg"
  exit 0
fi
[ -x "$BIN" ] || { echo "grub-qemu-test: no suitcase binary at $BIN (cargo build -p suitcase-cli)" >&2; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

WORK=$OUT/run
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT/cache"
LOGS=$WORK/logs
mkdir -p "$LOGS"
boots=0
server_pid=

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
say() { printf 'grub-qemu: %s\n' "$*"; }
fail() {
  echo "grub-qemu: FAILED: $*" >&2
  exit 1
}
on_exit() {
  local rc=$?
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ]; then
    echo "grub-qemu: the server's log (last 40 lines):" >&2
    tail -n 40 "$WORK/server.log" >&2 2>/dev/null || true
    if [ -n "${last_log:-}" ] && [ -f "$last_log" ]; then
      echo "grub-qemu: serial output of the last boot ($last_log):" >&2
      cat "$last_log" >&2
    fi
    echo "grub-qemu: FAILED after $((SECONDS - script_start)) s, $boots boots (logs in $LOGS)" >&2
  fi
}
trap on_exit EXIT

# --- the kernel -------------------------------------------------------------------------------
# Debian's own, whatever the host runs: the package linux-image-amd64 points at, fetched with
# `apt-get download` and unpacked (not installed) into $OUT/cache, where later runs find it.
# apt-cache exits 100 when its lists do not know the package: no abort under `set -e`, the
# lists are refreshed (bounded) and it is asked again.
kernel_package() {
  { apt-cache depends linux-image-amd64 2>/dev/null || true; } \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1
}
# Without a kernel in the cache (a fresh machine) the lists are refreshed first, so that the
# version they name is one the archive still has.
if ! compgen -G "$OUT/cache/linux-image-*/vmlinuz" >/dev/null; then
  as_root timeout 300 apt-get update -q >/dev/null 2>&1 || true
fi
pkg=$(kernel_package)
if [ -z "$pkg" ]; then
  as_root timeout 300 apt-get update -q >/dev/null 2>&1 || true
  pkg=$(kernel_package)
fi
[ -n "$pkg" ] || fail "apt-cache knows no linux-image-amd64 (is this Debian amd64?)"
KVER=${pkg#linux-image-}
# The cache keeps the kernel and the few modules the initramfs loads, not the whole package.
CACHE=$OUT/cache/$pkg
KERNEL=$CACHE/vmlinuz
if [ ! -f "$KERNEL" ] || [ ! -f "$CACHE/modules/order" ]; then
  say "fetching $pkg (apt-get download, unpacked into $OUT/cache)"
  unpacked=$OUT/cache/unpacked
  rm -rf "$CACHE" "$unpacked" "$OUT/cache/deb"
  mkdir -p "$OUT/cache/deb" "$CACHE/modules"
  (cd "$OUT/cache/deb" && timeout 300 apt-get download -q "$pkg" >/dev/null 2>&1) \
    || fail "apt-get download $pkg"
  dpkg-deb -x "$OUT/cache/deb/"*.deb "$unpacked"
  rm -rf "$OUT/cache/deb"
  # modules.dep is made at install time; busybox's depmod makes it here.
  /bin/busybox depmod -b "$unpacked" "$KVER"
  MODDIR=$unpacked/lib/modules/$KVER
  [ -f "$unpacked/boot/vmlinuz-$KVER" ] && [ -f "$MODDIR/modules.dep" ] || fail "$pkg holds no vmlinuz-$KVER"
  # The modules the initramfs loads (Debian builds these as modules), dependencies first:
  # virtio PCI, disk and network, and ext4 (which mounts the ext2 boot partition).
  modules_for() {
    local m=$1 line dep
    line=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$MODDIR/modules.dep" | head -n1)
    [ -n "$line" ] || fail "module $m not in $MODDIR/modules.dep"
    for dep in ${line#*:}; do
      modules_for "$(basename "${dep%%.ko*}")"
    done
    echo "${line%%:*}"
  }
  modules=$(for m in virtio_pci virtio_blk virtio_net crc32c_generic ext4; do modules_for "$m"; done | awk '!seen[$0]++')
  for m in $modules; do
    case "$m" in *.ko) ;; *) fail "compressed module $m: this script loads plain .ko files" ;; esac
    cp "$MODDIR/$m" "$CACHE/modules/"
  done
  cp "$unpacked/boot/vmlinuz-$KVER" "$KERNEL"
  for m in $modules; do basename "$m"; done >"$CACHE/modules/order"
  rm -rf "$unpacked"
fi
say "kernel $KVER (Debian $pkg), modules: $(tr '\n' ' ' <"$CACHE/modules/order"); QEMU TCG (no KVM)"

# --- the server, keys, the device ---------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
NO_COLOR=1 RUST_LOG=${RUST_LOG:-warn} "$BIN" server --data "$WORK/data" --listen "127.0.0.1:$port" \
  >"$WORK/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 150); do
  curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited at start"
  sleep 0.2
done
curl -fsS -o /dev/null "$base/healthz" || fail "the server does not answer on $base"
admin=$(cat "$WORK/data/admin-token")
fleet() { "$BIN" fleet --server "$base" --token "$admin" --json "$@"; }
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

"$BIN" key generate --alg es256 -o "$WORK/author.key" --public "$WORK/author.pub" >/dev/null
fleet key add author "$WORK/author.pub" >/dev/null
fleet device add qemu-grub --tag qemu >"$WORK/device.json"
device_id=$(json 'd["id"]' <"$WORK/device.json")
json 'd["token"]' <"$WORK/device.json" >"$WORK/token"
say "server $base, device $device_id"

# --- the initramfs of a slot ----------------------------------------------------------------
# Common to every slot: busybox, the modules, grub-editenv and the shared libraries it and
# the agent need. The agent binary itself lives on the boot partition (/mnt/suitcase), not
# in the slot: a debug build is tens of MB, and what a release changes here is the slot.
COMPONENT_ID=696e697472616d6673 # "initramfs"
CAPACITY=$((32 * 1024 * 1024))
VENDOR=example.com
CLASS=qemu-grub
common=$WORK/initramfs-common
mkdir -p "$common"/{bin,lib/modules,etc/suitcase,proc,sys,dev,mnt/boot,tmp,usr/bin}
cp /bin/busybox "$common/bin/busybox"
cp "$CACHE/modules/"* "$common/lib/modules/"
cp "$(command -v grub-editenv)" "$common/usr/bin/grub-editenv"
for lib in $( { ldd "$(command -v grub-editenv)"; ldd "$BIN"; } | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
  mkdir -p "$common$(dirname "$lib")"
  cp -L "$lib" "$common$lib"
done
# The system trust store: the agent's HTTP client (rustls with the platform's roots) refuses
# to start without one, even for an http:// server.
mkdir -p "$common/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$common/etc/ssl/certs/" \
  || fail "no /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
cat >"$common/etc/suitcase/agent.toml" <<EOF
# The agent of the QEMU GRUB test: its state, token and trust anchor on the boot partition.
state_dir = "/mnt/boot/suitcase/state"

[server]
url = "http://10.0.2.2:$port"
token_file = "/mnt/boot/suitcase/token"
timeout_seconds = 20

[trust]
anchors = ["/mnt/boot/suitcase/author.pub"]

[identity]
vendor = "$VENDOR"
class = "$CLASS"

[health]
command = ["/bin/health"]
timeout_seconds = 30

[push]
enabled = false

[[component]]
name = "initramfs"
id = "$COMPONENT_ID"
kind = "file"
slots = ["/mnt/boot/slot-a/initrd.img", "/mnt/boot/slot-b/initrd.img"]
capacity = $CAPACITY
bootloader = "grub"
reboot = ["/bin/reboot-now"]

[component.boot]
grubenv = "/mnt/boot/boot/grub/grubenv"
tries = 3
EOF
cat >"$common/bin/reboot-now" <<'EOF'
#!/bin/sh
# The agent's reboot command: flush the boot partition, then reset (QEMU -no-reboot exits).
echo "suitcase-qemu: reboot (SUITCASE_SLOT=$SUITCASE_SLOT, step $SUITCASE_STEP)"
sync
mount -o remount,ro /mnt/boot 2>/dev/null
exec reboot -f
EOF
cat >"$common/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m" || echo "suitcase-qemu: insmod $m failed"; done
for _ in $(seq 1 100); do [ -b /dev/vda1 ] && break; sleep 0.1; done
mount -t ext4 /dev/vda1 /mnt/boot || { echo "suitcase-qemu: cannot mount /dev/vda1"; poweroff -f; }
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
slot=$(sed -n 's/.*suitcase\.slot=\([AB]\).*/\1/p' /proc/cmdline)
echo "suitcase-qemu: booted slot $slot, initramfs $(cat /etc/release)"
/mnt/boot/suitcase/suitcase agent --config /etc/suitcase/agent.toml --once --json
echo "suitcase-qemu: agent exit $?"
sync
umount /mnt/boot
poweroff -f
EOF
chmod +x "$common/init" "$common/bin/reboot-now"

# make_initramfs OUT RELEASE HEALTH: a slot image; HEALTH is `ok`, `fails` (the health check
# exits 1) or `panics` (init exits at once: the kernel panics and, with panic=1, reboots).
make_initramfs() {
  local out=$1 release=$2 health=$3 dir
  dir=$WORK/initramfs-$release
  rm -rf "$dir"
  cp -a "$common" "$dir"
  echo "$release" >"$dir/etc/release"
  case $health in
    ok)
      cat >"$dir/bin/health" <<'EOF'
#!/bin/sh
# Healthy: this initramfs is the slot the kernel command line names, the server answers.
echo "suitcase-qemu: health check of $(cat /etc/release)"
wget -q -O /dev/null "$(sed -n 's/^url = "\(.*\)"/\1/p' /etc/suitcase/agent.toml)/healthz"
EOF
      ;;
    fails)
      cat >"$dir/bin/health" <<'EOF'
#!/bin/sh
echo "suitcase-qemu: health check of $(cat /etc/release): the application does not start"
exit 1
EOF
      ;;
    panics)
      cat >"$dir/init" <<'EOF'
#!/bin/busybox sh
echo "suitcase-qemu: broken initramfs: init exits"
exit 1
EOF
      ;;
  esac
  [ ! -f "$dir/bin/health" ] || chmod +x "$dir/bin/health"
  chmod +x "$dir/init"
  (cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 >"$out"
}

# --- the disk: MBR with GRUB's boot.img and core.img, one ext2 partition ---------------------
# No root, loop device or partitioning tool: the partition is made by `mke2fs -d` from a
# directory, GRUB goes into the gap before it (what grub-install does for BIOS on an
# MBR disk), and the partition entry is written by hand.
bootfs=$WORK/bootfs
mkdir -p "$bootfs"/{boot/grub/i386-pc,slot-a,slot-b,suitcase}
cp "$KERNEL" "$bootfs/vmlinuz"
cp "$GRUB_DIR"/*.mod "$GRUB_DIR"/*.lst "$bootfs/boot/grub/i386-pc/"
grep -q '^# Board-specific' docs/bootloaders/grub.cfg \
  || fail "docs/bootloaders/grub.cfg has no '# Board-specific' line before its menu entries"
# The shipped script up to its board-specific menu entries, then this board's; GRUB's
# messages go to the serial port (the log) too.
{
  echo "# The test's serial console (scripts/grub-qemu-test.sh), then docs/bootloaders/grub.cfg."
  echo "serial --unit=0 --speed=115200"
  echo "terminal_output serial console"
  sed '/^# Board-specific/,$d' docs/bootloaders/grub.cfg
} >"$bootfs/boot/grub/grub.cfg"
cat >>"$bootfs/boot/grub/grub.cfg" <<'EOF'
# This board (scripts/grub-qemu-test.sh): one kernel, the slot is the initramfs.
menuentry "suitcase slot A" --id suitcase-a {
    echo "suitcase-grub: booting slot A (BOOT_ORDER=${BOOT_ORDER} BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT})"
    linux /vmlinuz console=ttyS0 panic=1 loglevel=4 suitcase.slot=A
    initrd /slot-a/initrd.img
}
menuentry "suitcase slot B" --id suitcase-b {
    echo "suitcase-grub: booting slot B (BOOT_ORDER=${BOOT_ORDER} BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT})"
    linux /vmlinuz console=ttyS0 panic=1 loglevel=4 suitcase.slot=B
    initrd /slot-b/initrd.img
}
EOF
grub-script-check "$bootfs/boot/grub/grub.cfg" || fail "grub-script-check refuses the generated grub.cfg"
grub-editenv "$bootfs/boot/grub/grubenv" create
make_initramfs "$bootfs/slot-a/initrd.img" A0-factory ok
# Slot B starts as a copy of A (as from the factory): the release overwrites it.
cp "$bootfs/slot-a/initrd.img" "$bootfs/slot-b/initrd.img"
objcopy --strip-debug "$BIN" "$bootfs/suitcase/suitcase"
cp "$WORK/token" "$WORK/author.pub" "$bootfs/suitcase/"
mkdir -p "$bootfs/suitcase/state"

PART_START=2048 # sectors: the partition starts at 1 MiB; GRUB's core.img fits before it
part_mib=$(( ($(du -sm "$bootfs" | cut -f1) + 2 * CAPACITY / 1048576 + 32) ))
mke2fs -q -t ext2 -L boot -d "$bootfs" "$WORK/part.img" "${part_mib}M" >/dev/null
grub-mkimage -O i386-pc -p '(hd0,msdos1)/boot/grub' -o "$WORK/core.img" \
  biosdisk part_msdos ext2 normal configfile linux loadenv test echo sleep reboot
core_sectors=$(( ($(stat -c %s "$WORK/core.img") + 511) / 512 ))
[ "$core_sectors" -lt $((PART_START - 1)) ] || fail "core.img ($core_sectors sectors) does not fit before the partition"
DISK=$WORK/disk.img
part_sectors=$(( $(stat -c %s "$WORK/part.img") / 512 ))
truncate -s $(( (PART_START + part_sectors) * 512 )) "$DISK"
dd if="$GRUB_DIR/boot.img" of="$DISK" bs=512 count=1 conv=notrunc status=none
dd if="$WORK/core.img" of="$DISK" bs=512 seek=1 conv=notrunc status=none
python3 - "$DISK" "$PART_START" "$part_sectors" <<'EOF'
import struct, sys
path, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "r+b") as f:
    f.seek(446)  # partition 1: bootable, CHS unused (LBA), type 0x83 (Linux)
    f.write(struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", start, count))
    f.write(bytes(48))
    f.write(b"\x55\xaa")
EOF
dd if="$WORK/part.img" of="$DISK" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f "$WORK/part.img"
say "disk: $(du -h --apparent-size "$DISK" | cut -f1), GRUB core.img $core_sectors sectors, initramfs $(stat -c %s "$bootfs/slot-a/initrd.img") bytes"

# --- reading the disk back ------------------------------------------------------------------
# The grubenv, as grub-editenv lists it, copied out of the ext2 partition with debugfs.
part_img() {
  # debugfs reads the partition through an offset into the disk image.
  echo "$DISK?offset=$((PART_START * 512))"
}
grubenv() {
  rm -f "$WORK/grubenv.out"
  debugfs -R "dump /boot/grub/grubenv $WORK/grubenv.out" "$(part_img)" >/dev/null 2>&1 \
    || fail "debugfs cannot read the grubenv"
  grub-editenv "$WORK/grubenv.out" list | grep '^BOOT_' | sort | tr '\n' ' ' | sed 's/ $//'
}
expect_env() {
  local got
  got=$(grubenv)
  [ "$got" = "$1" ] || fail "grubenv after boot $boots: expected '$1', got '$got'"
  say "  grubenv: $got"
}

# boot EXPECT_SLOT EXPECT_END: one power-on, until QEMU exits (the guest rebooted or powered
# off). EXPECT_END: `reboot` (the agent's reboot command), `poweroff` (the agent finished),
# `panic` (the broken initramfs).
boot() {
  local slot=$1 want=$2 log rc start
  boots=$((boots + 1))
  log=$LOGS/boot-$boots-$slot.log
  last_log=$log
  start=$SECONDS
  rc=0
  timeout --foreground -k 5 "$BOOT_TIMEOUT" qemu-system-x86_64 -machine pc,accel=tcg -m 512 -smp 1 \
    -display none -monitor none -serial "file:$log" -no-reboot \
    -drive "file=$DISK,format=raw,if=virtio" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 </dev/null >"$log.qemu" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { cat "$log.qemu" >&2; fail "boot $boots: QEMU exited with $rc (124: timeout after $BOOT_TIMEOUT s)"; }
  grep -q "suitcase-grub: booting slot $slot " "$log" \
    || fail "boot $boots: GRUB did not boot slot $slot ($(grep -ao 'suitcase-grub: booting slot [AB]' "$log" || echo 'no slot'))"
  case $want in
    reboot) grep -q "suitcase-qemu: reboot" "$log" || fail "boot $boots: the agent did not reboot" ;;
    poweroff) grep -q "suitcase-qemu: agent exit" "$log" || fail "boot $boots: the agent did not finish" ;;
    panic) grep -q "Kernel panic" "$log" || fail "boot $boots: no kernel panic" ;;
  esac
  say "boot $boots: slot $slot, $want, $((SECONDS - start)) s$(grep -ao "suitcase-qemu: agent exit [0-9]*" "$log" | sed "s/suitcase-qemu:/;/" || true)"
}

# release N INITRAMFS: built, signed, uploaded, and a started campaign for the device; prints
# the campaign id.
release() {
  local n=$1 image=$2 rel
  "$BIN" release build --image "$image" --component "$COMPONENT_ID" --vendor "$VENDOR" --class "$CLASS" \
    --sequence "$n" --uri "https://fw.example.com/qemu-grub/initramfs-$n.img" --profile basic \
    --sign "$WORK/author.key" -o "$WORK/release-$n.suit" >/dev/null
  cp "$image" "$WORK/initramfs-$n.img"
  rel=$(fleet release upload "$WORK/release-$n.suit" --payload "$WORK/initramfs-$n.img" --name "initramfs $n" | json 'd["id"]')
  fleet campaign create --release "$rel" --device "$device_id" --start | json 'd["id"]'
}

# The server's view: the campaign's state, the device's update state and, from its last
# check-in, the slot it booted and whether it reported a revert (a revert is reported at the
# check-in after it, once).
expect_server() { # CAMPAIGN CAMPAIGN_STATE UPDATE_STATE SLOT REVERTED
  local got want="$2 $3 slot=$4 reverted=$5"
  got="$(fleet campaign show "$1" | json 'd["state"]') $(fleet device show "$device_id" \
    | json '"%s slot=%s reverted=%s" % (d["update"]["state"], d["inventory"]["boot"]["slot"], str(d["inventory"]["boot"]["reverted"]).lower())')"
  [ "$got" = "$want" ] || fail "server after boot $boots: expected '$want', got '$got'"
  say "  server: campaign $2, update $3, the device booted $4, reverted=$5"
}

say "1. release 1 (a good initramfs) into slot B"
make_initramfs "$WORK/good.img" R1-good ok
campaign1=$(release 1 "$WORK/good.img")
boot A reboot
expect_env "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=B A"
say "2. slot B on trial: health check passes, confirmed"
boot B poweroff
grep -q 'health check passed; confirmed' "$last_log" || fail "boot $boots: slot B not confirmed"
expect_env "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=B A"
expect_server "$campaign1" completed succeeded b false

say "3. release 2 (an initramfs that never comes up) into slot A"
make_initramfs "$WORK/panics.img" R2-panics panics
campaign2=$(release 2 "$WORK/panics.img")
boot B reboot
expect_env "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=A B"
for left in 2 1 0; do
  boot A panic
  expect_env "BOOT_A_LEFT=$left BOOT_B_LEFT=3 BOOT_ORDER=A B"
done
say "   GRUB falls back to slot B; the agent reads the fallback back"
boot B poweroff
grep -q 'boot-refused' "$last_log" || fail "boot $boots: the agent did not refuse the boot of slot A"
expect_env "BOOT_A_LEFT=0 BOOT_B_LEFT=3 BOOT_ORDER=B A"
expect_server "$campaign2" paused failed b true

say "4. release 3 (an initramfs whose health check fails) into slot A"
make_initramfs "$WORK/unhealthy.img" R3-unhealthy fails
campaign3=$(release 3 "$WORK/unhealthy.img")
boot B reboot
expect_env "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=A B"
boot A reboot
grep -q '"reason":"health-check"' "$last_log" || fail "boot $boots: the health check of slot A did not fail"
expect_env "BOOT_A_LEFT=0 BOOT_B_LEFT=3 BOOT_ORDER=B A"
say "   the agent's reboot brings slot B back"
boot B poweroff
expect_env "BOOT_A_LEFT=0 BOOT_B_LEFT=3 BOOT_ORDER=B A"
expect_server "$campaign3" paused failed b true
grep -q "initramfs R1-good" "$last_log" || fail "boot $boots: slot B no longer runs release 1"

# The logs and the server's data stay; the disk image and the trees it was made from go.
rm -rf "$DISK" "$bootfs" "$common" "$WORK"/initramfs-* "$WORK"/*.img
say "PASS: $boots boots in $((SECONDS - script_start)) s (serial logs in $LOGS)"
