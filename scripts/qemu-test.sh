#!/usr/bin/env bash
# Boots the suitcase bootloader on an emulated Cortex-M4 (QEMU mps2-an386) and checks, from
# what the bootloader and the application print on UART0, that:
#   1. a signed factory image boots;
#   2. a tampered update is refused and the old image keeps running;
#   3. an update the application does not confirm boots once on trial, then reverts at the
#      next reset;
#   4. an update staged by the host boots on trial, is confirmed, and stays;
#   5. an authentic but older update is refused (anti-rollback);
#   6. (trust-*) a bootloader built with the feature `trust` takes its anchors from the trust
#      state in its protected trust area: a trust update made with `suitcase trust update`
#      (the new author key in, the old one revoked) is committed at reset before the slot is
#      verified, the new key's release boots, and the old key's newer release is refused at
#      boot naming the revocation (`ok: trust-revoked`); the trust update staged again is
#      refused as a replay.
# With --footprint it also builds one bootloader per verification path (ES256, Ed25519,
# HSS-LMS, ML-DSA-65), boots each with an envelope signed for it, and prints the footprint
# table of docs/benchmarks.md (flash, static RAM, painted-stack peak measured in QEMU), and
# one JSON line per verification path (and "es256-trust": the `trust` bootloader, RustCrypto
# ES256 and Ed25519 under the trust state, booting a release by the state's ES256 signer):
#   {"path": "es256", "flash": N, "static_ram": N, "peak_stack": N, "boot_cycles": N}
# flash: .vector_table + .text + .rodata + .data (what the ELF puts in flash); static_ram:
# .data + .bss; peak_stack: the painted-stack peak; boot_cycles: instructions from main to the
# jump into the application, counted in a second run under QEMU's -icount shift=0 (1 ns of
# virtual time per instruction, read from a 25 MHz timer: to within 40 instructions), without
# the stack paint, for a reset of a confirmed image of 56 KiB (the largest slot A holds after
# its 8 KiB header area).
#
# Toolchain: Debian's rustc-web 1.96 with its standard-library sources builds `core` for
# thumbv7em-none-eabihf (-Zbuild-std); it stays separate from the rustup toolchain the rest of
# the project uses: /usr/bin goes first on PATH only inside `thumb_cargo` below. Without the
# packages this script prints SKIP and exits 0:
#   apt-get install -y rustc-web cargo-web rust-web-src lld qemu-system-arm
#
# Environment: SUITCASE_BIN (a built `suitcase`, else it is built with the host toolchain),
# SUITCASE_QEMU_OUT (work directory, default target/thumb).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

FOOTPRINT=0
for arg in "$@"; do
  case "$arg" in
    --footprint) FOOTPRINT=1 ;;
    *) echo "usage: $0 [--footprint]" >&2; exit 2 ;;
  esac
done

TARGET=thumbv7em-none-eabihf
OBJCOPY=/usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-objcopy
missing=()
[ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] || missing+=("rustc-web/cargo-web (/usr/bin/cargo, /usr/bin/rustc)")
[ -d /usr/lib/rustlib/src/rust/library/core ] || missing+=("rust-web-src (/usr/lib/rustlib/src/rust/library)")
command -v ld.lld >/dev/null || missing+=("lld (ld.lld)")
command -v qemu-system-arm >/dev/null || missing+=("qemu-system-arm")
# The ES256 bootloader's P-256 (P256-Cortex-M4's assembly, p256-cortex-m4-sys) is built by cc.
command -v arm-none-eabi-gcc >/dev/null || missing+=("gcc-arm-none-eabi (arm-none-eabi-gcc)")
[ -x "$OBJCOPY" ] || missing+=("rust-objcopy (rustc-web)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "SKIP: QEMU boot test: missing ${missing[*]};"
  echo "      install with: apt-get install -y rustc-web cargo-web rust-web-src lld qemu-system-arm gcc-arm-none-eabi"
  # .ci/run sets SUITCASE_QEMU_REQUIRED once it has installed them: then a missing tool is a failure.
  [ -z "${SUITCASE_QEMU_REQUIRED:-}" ] || exit 1
  exit 0
fi

OUT=${SUITCASE_QEMU_OUT:-$ROOT/target/thumb}
RUN=$OUT/run
rm -rf "$RUN"
mkdir -p "$RUN/keys"

# The Debian toolchain, for the firmware workspace only. RUSTFLAGS is set here because an
# inherited one (CI sets -D warnings) would replace firmware/.cargo/config.toml's. THUMB_CFG
# adds flags for one build (the Class 1 configuration's --cfg suitcase_small).
thumb_cargo() {
  # .ci/run exports heal_dev_null (a regular-file /dev/null breaks cargo's target probe).
  if declare -F heal_dev_null >/dev/null; then heal_dev_null; fi
  (cd "$ROOT/firmware" &&
    PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$OUT/cargo" \
      RUSTFLAGS="-D warnings --cfg sha2_backend_soft=\"compact\" ${THUMB_CFG:-}" \
      /usr/bin/cargo "$@")
}
ELF_DIR=$OUT/cargo/$TARGET/release

step() { printf '\n--> %s\n' "$*"; }

step "toolchain: $(/usr/bin/rustc --version), $(qemu-system-arm --version | head -1)"

step "the suitcase CLI (host toolchain)"
if [ -n "${SUITCASE_BIN:-}" ]; then
  SUITCASE=$SUITCASE_BIN
else
  cargo build -q -p suitcase-cli
  # Where cargo put it: CARGO_TARGET_DIR if set (absolute or relative to the repository).
  target_dir=${CARGO_TARGET_DIR:-target}
  case $target_dir in /*) ;; *) target_dir=$ROOT/$target_dir ;; esac
  SUITCASE=$target_dir/debug/suitcase
fi
"$SUITCASE" --version

step "host tool mps2-flash (Debian toolchain, host target)"
thumb_cargo build -q -j2 --release -p mps2-flash
FLASHTOOL=$OUT/cargo/release/mps2-flash

step "keys"
# One signing key per verification path; the bootloader embeds the COSE_Key public key.
for alg in es256 ed25519 ml-dsa-65 hss-lms; do
  "$SUITCASE" key generate --alg "$alg" --format cose -o "$RUN/keys/$alg.key" \
    --public "$RUN/keys/$alg.pub" >/dev/null
done

step "application, versions 1.0.0 and 2.0.0"
for version in 1.0.0 2.0.0; do
  APP_VERSION=$version thumb_cargo build -q -j2 --release -Zbuild-std=core --target $TARGET -p mps2-app
  "$OBJCOPY" -O binary "$ELF_DIR/mps2-app" "$RUN/app-$version.bin"
  cp "$ELF_DIR/mps2-app" "$RUN/app-$version.elf"
done

# bootloader NAME KEY: build bootloader-NAME.elf with one verifier (NAME is the feature,
# with -small for the Class 1 configuration), trusting KEY's public key.
bootloader() {
  local feature=${1%-small} cfg=""
  [ "$feature" = "$1" ] || cfg="--cfg suitcase_small"
  SUITCASE_TRUST_ANCHOR="$RUN/keys/$2.pub" THUMB_CFG="$cfg" \
    thumb_cargo build -q -j2 --release -Zbuild-std=core --target $TARGET -p mps2-bootloader --features "$feature"
  cp "$ELF_DIR/mps2-bootloader" "$RUN/bootloader-$1.elf"
}

# release VERSION SEQUENCE OUT PROFILE KEY...: a signed envelope for app VERSION, packed into
# a slot image.
release() {
  local version=$1 sequence=$2 out=$3 profile=$4
  shift 4
  local signs=()
  for key in "$@"; do signs+=(--sign "$RUN/keys/$key.key"); done
  "$SUITCASE" release build --image "$RUN/app-$version.bin" --component 00 \
    --vendor example.com --class mps2-an386 --sequence "$sequence" \
    --uri "https://fw.example.com/mps2/app-$version.bin" --profile "$profile" \
    "${signs[@]}" -o "$RUN/$out.suit" >/dev/null
  "$FLASHTOOL" pack --envelope "$RUN/$out.suit" --image "$RUN/app-$version.bin" -o "$RUN/$out.slot"
}

# boot NAME BOOTLOADER APPEND PATTERN...: one power cycle. Every PATTERN must appear in the
# UART output, and none prefixed with '!' may; QEMU must exit 0 within the timeout.
# QEMU_EXTRA: more QEMU options (word-split), e.g. -icount shift=0.
boot() {
  local name=$1 bl=$2 append=$3
  shift 3
  local log=$RUN/$name.log status=0
  # shellcheck disable=SC2086
  (cd "$RUN" && timeout 60 qemu-system-arm -M mps2-an386 -nographic -semihosting ${QEMU_EXTRA:-} \
    -kernel "$bl" -append "flash=flash.bin $append" </dev/null >"$log" 2>&1) || status=$?
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
    echo "FAIL: $name"
    printf '  %s\n' "${failed[@]}"
    echo "  UART output ($log):"
    sed 's/^/  | /' "$log"
    exit 1
  fi
  echo "ok: $name"
}

step "bootloader (ES256) and releases: v1 (sequence 1), v2 (sequence 2), v2 tampered"
bootloader es256 es256
BL=$RUN/bootloader-es256.elf
release 1.0.0 1 v1 basic es256
release 2.0.0 2 v2 basic es256
"$FLASHTOOL" tamper "$RUN/v2.slot" -o "$RUN/v2-tampered.slot"

step "scenarios (one QEMU run per reset)"
"$FLASHTOOL" init --slot "$RUN/v1.slot" -o "$RUN/flash.bin"
boot 1-factory-image "$BL" "" \
  "boot: verified slot A: security version 1" "boot: booting slot A (confirmed)" \
  "app: hello from version 1.0.0" "app: running from slot A, phase confirmed"

"$FLASHTOOL" stage --flash "$RUN/flash.bin" --slot "$RUN/v2-tampered.slot"
boot 2-tampered-update-refused "$BL" "" \
  "boot: last update failed: image 0 invalid: image rejected by the verifier" \
  "boot: booting slot A (confirmed)" "app: hello from version 1.0.0" \
  "!app: hello from version 2.0.0"

"$FLASHTOOL" stage --flash "$RUN/flash.bin" --slot "$RUN/v2.slot"
boot 3a-update-on-trial-not-confirmed "$BL" "no-confirm" \
  "boot: verified slot A: security version 2" "boot: booting slot A (trial boot 1 of 1)" \
  "app: hello from version 2.0.0" "app: on trial (boot 1 of 1), not confirming"
boot 3b-unconfirmed-update-reverted "$BL" "" \
  "boot: last update failed: trial image not confirmed; reverted" \
  "boot: verified slot A: security version 1" "boot: booting slot A (confirmed)" \
  "app: hello from version 1.0.0" "app: running from slot A, phase confirmed, anti-rollback minimum 0"

"$FLASHTOOL" stage --flash "$RUN/flash.bin" --slot "$RUN/v2.slot"
boot 4a-update-on-trial-confirmed "$BL" "" \
  "boot: booting slot A (trial boot 1 of 1)" "app: hello from version 2.0.0" \
  "app: version 2.0.0 confirmed"
boot 4b-confirmed-update-stays "$BL" "" \
  "boot: verified slot A: security version 2" "boot: booting slot A (confirmed)" \
  "app: hello from version 2.0.0" "app: running from slot A, phase confirmed, anti-rollback minimum 2"

"$FLASHTOOL" stage --flash "$RUN/flash.bin" --slot "$RUN/v1.slot"
boot 5-rollback-refused "$BL" "" \
  "boot: last update failed: image 0 rolls back: security version 1 is below 2" \
  "boot: booting slot A (confirmed)" "app: hello from version 2.0.0" \
  "!app: hello from version 1.0.0"

# section_size ELF NAME: the size in bytes of section NAME (0 if absent), from readelf.
section_size() {
  local hex
  hex=$(readelf -SW "$1" | sed -n "s/^ *\[ *[0-9]*\] $2  *[A-Z_]*  *[0-9a-f]*  *[0-9a-f]*  *\([0-9a-f]*\) .*/\1/p")
  echo $((16#${hex:-0}))
}

step "trust state in the bootloader's trust area (feature trust): rotation, revocation"
# 2-of-2 root (P-256); author keys: the old one is revoked by trust update 1, which adds the
# new one (docs/trust.md's walk-through).
for k in trust-root1 trust-root2 trust-old trust-new; do
  "$SUITCASE" key generate --alg es256 -o "$RUN/keys/$k.key" --public "$RUN/keys/$k.pub" >/dev/null
done
"$SUITCASE" trust init --root "$RUN/keys/trust-root1.pub" --root "$RUN/keys/trust-root2.pub" \
  --threshold 2 --signer "$RUN/keys/trust-old.pub" --out "$RUN/trust.cbor" >/dev/null
"$SUITCASE" trust update --state "$RUN/trust.cbor" --add-signer "$RUN/keys/trust-new.pub" \
  --revoke "$RUN/keys/trust-old.pub" --sign "$RUN/keys/trust-root1.key" \
  --sign "$RUN/keys/trust-root2.key" --out "$RUN/trust-update-1.suit" --state-out "$RUN/trust-1.cbor" >/dev/null
bootloader trust es256
TBL=$RUN/bootloader-trust.elf
release 1.0.0 1 trust-old-v1 basic trust-old
release 2.0.0 2 trust-new-v2 basic trust-new
release 1.0.0 3 trust-old-v3 basic trust-old
"$FLASHTOOL" init --slot "$RUN/trust-old-v1.slot" -o "$RUN/flash.bin"
"$FLASHTOOL" trust-init --flash "$RUN/flash.bin" --state "$RUN/trust.cbor"
boot trust-factory-state-0 "$TBL" "" \
  "boot: trust state 0 in force" "boot: verified slot A: security version 1" \
  "boot: booting slot A (confirmed)" "app: hello from version 1.0.0"
# The trust update and the new key's release together (docs/trust.md: rotate before you
# revoke the running image's key): the update is committed first, then the release verified.
"$FLASHTOOL" trust-stage --flash "$RUN/flash.bin" --update "$RUN/trust-update-1.suit"
"$FLASHTOOL" stage --flash "$RUN/flash.bin" --slot "$RUN/trust-new-v2.slot"
boot trust-update-committed "$TBL" "" \
  "boot: trust update committed: trust state 0 -> 1" "boot: trust state 1 in force" \
  "boot: booting slot A (trial boot 1 of 1)" "app: hello from version 2.0.0" \
  "app: version 2.0.0 confirmed"
# The old key's newer release, and the trust update replayed.
"$FLASHTOOL" trust-stage --flash "$RUN/flash.bin" --update "$RUN/trust-update-1.suit"
"$FLASHTOOL" stage --flash "$RUN/flash.bin" --slot "$RUN/trust-old-v3.slot"
boot trust-revoked "$TBL" "" \
  "boot: trust update refused" "boot: trust state 1 in force" \
  "boot: image 0 refused: signed by revoked key" "(revoked by trust state 1)" \
  "boot: last update failed: image 0 invalid: image rejected by the verifier" \
  "boot: verified slot A: security version 2" "boot: booting slot A (confirmed)" \
  "app: hello from version 2.0.0" "!app: hello from version 1.0.0" \
  "!trust update committed"

# Power cuts on the target: the swap, confirm and revert cut at their flash operations.
. "$ROOT/scripts/qemu-powercut.sh"

# The application updates itself through the gateway agent from a real server campaign.
SUITCASE_BIN="$SUITCASE" SUITCASE_QEMU_OUT="$OUT" SUITCASE_SELFUPDATE_KEY="$RUN/keys/es256" \
  SUITCASE_SELFUPDATE_BOOTLOADER="$BL" "$ROOT/scripts/qemu-selfupdate.sh"

if [ "$FOOTPRINT" -eq 1 ]; then
  step "footprint: one bootloader per verification path (thumbv7em, opt-level z, LTO)"
  # feature, key, profile and signing keys of the envelope. The Quantum tier is hybrid, so
  # its envelopes also carry an ES256 signature, which a bootloader without ES256 skips
  # (manifest §8.3: an unsupported algorithm does not invalidate the envelope). es256-small is
  # the Class 1 configuration: two components at most, a 512-byte envelope buffer.
  table=$RUN/footprint.md json=$RUN/footprint.jsonl
  : >"$json"
  # The largest image slot A holds (layout.rs MAX_IMAGE: 64 KiB less the 8 KiB header area):
  # application 1.0.0 padded with zeros.
  MAX_IMAGE=$((0x10000 - 0x2000))
  cp "$RUN/app-1.0.0.bin" "$RUN/app-max.bin"
  truncate -s "$MAX_IMAGE" "$RUN/app-max.bin"
  {
    echo "| verification path | envelope bytes | flash: text + rodata (+ 1 KiB vectors) | static RAM (.data + .bss) | peak stack during verification |"
    echo "|---|---|---|---|---|"
  } >"$table"
  # measure NAME ELF: boot ELF on flash.bin (the release fp-NAME), then add NAME's row and
  # JSON line from the ELF's sections, the UART's stack peak and a second run's instructions.
  measure() {
    local feature=$1 elf=$2 text rodata vectors data bss stack envelope cycles
    boot "footprint-$feature" "$elf" "" \
      "boot: verified slot A: security version 1" "app: hello from version 1.0.0"
    text=$(section_size "$elf" .text) rodata=$(section_size "$elf" .rodata)
    vectors=$(section_size "$elf" .vector_table)
    data=$(section_size "$elf" .data) bss=$(section_size "$elf" .bss)
    stack=$(sed -n 's/.*verification stack peak \([0-9]*\) bytes.*/\1/p' "$RUN/footprint-$feature.log")
    envelope=$(stat -c %s "$RUN/fp-$feature.suit")
    echo "| $feature | $envelope | $((text + rodata)) (+ $vectors) | $((data + bss)) | $stack |" >>"$table"
    # The second reset (a confirmed image) under -icount, without the stack paint.
    QEMU_EXTRA="-icount shift=0" boot "cycles-$feature" "$elf" cycles \
      "boot: booting slot A (confirmed)" "app: hello from version 1.0.0"
    cycles=$(sed -n 's/.*instructions from main to the jump: \([0-9]*\) .*/\1/p' "$RUN/cycles-$feature.log")
    # A figure the run did not print fails the script instead of becoming a 0 in the JSON.
    if [ -z "$stack" ] || [ -z "$cycles" ]; then
      echo "FAIL: footprint-$feature: no stack peak or no instruction count on UART (see $RUN)"
      exit 1
    fi
    printf '{"path": "%s", "flash": %d, "static_ram": %d, "peak_stack": %d, "boot_cycles": %d}\n' \
      "$feature" $((vectors + text + rodata + data)) $((data + bss)) "$stack" "$cycles" >>"$json"
  }
  for spec in "es256 es256 basic es256" "es256-small es256 basic es256" "ed25519 ed25519 basic ed25519" \
    "hss-lms hss-lms quantum es256 hss-lms" "ml-dsa ml-dsa-65 quantum es256 ml-dsa-65"; do
    # shellcheck disable=SC2086
    set -- $spec
    feature=$1 key=$2 profile=$3
    shift 3
    [ "$feature" = es256 ] || bootloader "$feature" "$key"
    release max 1 "fp-$feature" "$profile" "$@"
    "$FLASHTOOL" init --slot "$RUN/fp-$feature.slot" -o "$RUN/flash.bin"
    measure "$feature" "$RUN/bootloader-$feature.elf"
  done
  # The trust bootloader: a release by the signer of trust state 1, the state provisioned.
  release max 1 fp-es256-trust basic trust-new
  "$FLASHTOOL" init --slot "$RUN/fp-es256-trust.slot" -o "$RUN/flash.bin"
  "$FLASHTOOL" trust-init --flash "$RUN/flash.bin" --state "$RUN/trust-1.cbor" >/dev/null
  measure es256-trust "$TBL"
  echo
  cat "$table"
  echo
  cat "$json"
fi

echo
echo "QEMU boot test: all scenarios passed"
