# shellcheck shell=bash
# Power cuts on the target (issue 19 item 4): sourced by scripts/qemu-test.sh after its
# update scenarios, with its keys, `release`, `thumb_cargo`, `step`, $RUN, $FLASHTOOL.
#
# The real bootloader and application on QEMU mps2-an386, built with the board's `power-cut`
# feature (firmware/mps2-board/src/flash.rs): the command line `cut-after=N` ends the QEMU run
# right after the N-th erase or program of the power cycle (bootloader and application
# counted together), `torn` leaves that operation half applied, `flash-trace` lists every
# operation. The flash file is what survives; running QEMU again on it is the next reset.
#
# Each scenario starts from one flash image, runs it once uncut with `flash-trace` to list its
# cut points, then for each chosen point: restore the image, run with the cut, and restart
# (no cut, 30 s timeout per run) until an application run starts with its image confirmed (at
# most 5 restarts). The device must then run a verified image that is byte for byte the old
# or the new slot image (else `mixed`), an allowed one (the revert scenario: only the old),
# and a device left on the old image must take the update when it is staged again
# (`retried`). The anti-rollback minimum the settled application prints (`app: running from
# slot A, phase confirmed, anti-rollback minimum N`, the boot state's) must be the new
# release's sequence number on the new image (else `rollback`: a cut that left the new image
# confirmed with the old minimum would let the old image back in), and on the old image what
# it was before the cut or more, up to the old release's number (the factory image,
# `mps2-flash init`, starts at 0: the bootloader raises the minimum when it records an update
# confirmed). Anything else, a boot that fails or never settles, is `bricked`.
# One line per scenario: `ok: power-cut-<name> cuts=N old=a new=b retried=r bricked=0
# mixed=0 wrong=0 rollback=0`, else FAIL and exit 1.
#
# Scenarios (docs/qemu.md, "Power cuts on the target"):
#   stage   the host's staging of v2 into slot B (mps2-flash stage --cut-after N: the same
#           suitcase-boot Updater, on the host's simulated part), then the device restarts
#   swap    v2 staged: the bootloader's swap, its trial-boot record, the application's confirm
#   revert  v2 booted on trial and not confirmed: the bootloader's revert swap at the next reset
#   kill    kill -9 of QEMU at seeded random wall-clock times during the swap run and the
#           first restart (SUITCASE_POWERCUT_SEED, printed; default from the clock)
#   download  the application's own download through a real server and gateway, cut at its
#           flash writes (scripts/qemu-powercut-download.sh, sourced at the end)
#
# Every erase and program of the state partition is cut (whole and torn), and every erase of
# the slots (whole and torn); of the other slot programs every PC_STRIDE-th (default 8). With
# SUITCASE_POWERCUT_ALL=1 every operation is cut, whole and torn (minutes, not for CI).
#
# Adding a scenario (as scripts/qemu-powercut-download.sh does, sourced at the end): with
# PC_LIBRARY=1 sourcing this file only defines the functions and the settings below (PC, the
# work directory, is then the caller's to set); build the scenario's "before" flash image and
# call `pc_sweep NAME BEFORE "APPEND" "ALLOWED" RETRY`, then `pc_summary`'s line is printed.
# Settings: PC_BOOTLOADER (the power-cut bootloader), PC_FLASH (the flash file every run
# uses), PC_QEMU_IO (QEMU's display and serial options, e.g. `-display none -monitor none
# -serial stdio -serial unix:GATEWAY.sock`), PC_OLD_SLOT/PC_NEW_SLOT and
# PC_OLD_VERSION/PC_NEW_VERSION (what slot A must hold byte for byte for each version),
# PC_OLD_SEQUENCE/PC_NEW_SEQUENCE (their manifests' sequence numbers, for the anti-rollback
# minimum), PC_POINTS (a function of the uncut run's trace printing the cut points, default
# pc_points; PC_POINTS_SAID: what they are, for the summary line),
# PC_BEFORE_CUT (a function run before each cut run, e.g. to reset a gateway's session),
# PC_SETTLED (a function of one restart's log: has the device settled? default: its
# application started confirmed), PC_RESTAGE (a function that offers the update again after
# an old outcome; default: mps2-flash stage PC_NEW_SLOT).

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  echo "usage: sourced by scripts/qemu-test.sh (run that; it builds the firmware and keys)" >&2
  exit 2
fi

PC=${PC:-$RUN/powercut}
PC_STRIDE=${PC_STRIDE:-8}
PC_BOOTLOADER=${PC_BOOTLOADER:-$PC/bootloader.elf}
PC_FLASH=${PC_FLASH:-$PC/flash.bin}
PC_QEMU_IO=${PC_QEMU_IO:--nographic}
PC_OLD_SLOT=${PC_OLD_SLOT:-${RUN:-}/cut-v1.slot} PC_NEW_SLOT=${PC_NEW_SLOT:-${RUN:-}/cut-v2.slot}
PC_OLD_VERSION=${PC_OLD_VERSION:-1.0.0} PC_NEW_VERSION=${PC_NEW_VERSION:-2.0.0}
PC_OLD_SEQUENCE=${PC_OLD_SEQUENCE:-1} PC_NEW_SEQUENCE=${PC_NEW_SEQUENCE:-2}
PC_POINTS=${PC_POINTS:-pc_points}
PC_BEFORE_CUT=${PC_BEFORE_CUT:-}
PC_SETTLED=${PC_SETTLED:-pc_settled}
PC_RESTAGE=${PC_RESTAGE:-pc_restage}
pc_runs=0
mkdir -p "$PC"
: >"$PC/outcomes.txt" # one "SCENARIO-CUT OUTCOME" line per cut

# pc_qemu LOG APPEND [KILL_AFTER]: one power cycle on $PC_FLASH; returns QEMU's status (86: the
# hook cut the power; 137: killed at KILL_AFTER seconds, 124: the 30 s timeout).
pc_qemu() {
  local log=$1 append=$2 kill=${3:-}
  local limit=(timeout 30)
  pc_runs=$((pc_runs + 1))
  [ -z "$kill" ] || limit=(timeout -s KILL "$kill")
  # The subshell's stderr: bash's "Killed" notice when `timeout -s KILL` ends QEMU.
  # shellcheck disable=SC2086
  (cd "$(dirname "$PC_FLASH")" && "${limit[@]}" qemu-system-arm -M mps2-an386 $PC_QEMU_IO -semihosting \
    -kernel "$PC_BOOTLOADER" -append "flash=$(basename "$PC_FLASH") $append" </dev/null >"$log" 2>&1) 2>/dev/null
}

# pc_settled LOG: the default settle test: the application started with its image confirmed.
pc_settled() {
  grep -q "^app: running from slot A, phase confirmed" "$1"
}

# pc_restage: the default way to offer the update again: the host stages PC_NEW_SLOT.
pc_restage() {
  "$FLASHTOOL" stage --flash "$PC_FLASH" --slot "$PC_NEW_SLOT"
}

# pc_settle NAME APPEND: restart the device until an application run starts confirmed. Sets
# PC_VERSION (what it runs), PC_MINIMUM (the anti-rollback minimum it printed; empty if
# none) and PC_SETTLED_LOG, or PC_WHY and returns 1.
pc_settle() {
  local name=$1 append=$2 i status
  PC_VERSION="" PC_WHY="" PC_MINIMUM="" PC_SETTLED_LOG=""
  for i in 1 2 3 4 5; do
    status=0
    pc_qemu "$PC/$name.restart$i.log" "$append" || status=$?
    if [ "$status" -ne 0 ]; then
      PC_WHY="restart $i: QEMU exited with status $status ($PC/$name.restart$i.log)"
      return 1
    fi
    if "$PC_SETTLED" "$PC/$name.restart$i.log"; then
      PC_SETTLED_LOG=$PC/$name.restart$i.log
      PC_VERSION=$(sed -n 's/^app: hello from version //p' "$PC_SETTLED_LOG" | tail -1)
      PC_MINIMUM=$(sed -n 's/^app: running from slot A, phase confirmed, anti-rollback minimum \([0-9]*\)$/\1/p' \
        "$PC_SETTLED_LOG" | tail -1)
      return 0
    fi
  done
  PC_WHY="no confirmed application run in 5 restarts ($PC/$name.restart5.log)"
  return 1
}

# pc_slot_is SLOT: slot A of $PC_FLASH holds SLOT's bytes.
pc_slot_is() {
  cmp -s -i "$((0x2000)):0" -n "$(stat -c %s "$1")" "$PC_FLASH" "$1"
}

# pc_minimum_of FLASH: the anti-rollback minimum of a flash image's boot state.
pc_minimum_of() {
  "$FLASHTOOL" status --flash "$1" | sed -n 's/.*anti-rollback minimum \([0-9]*\).*/\1/p'
}

# pc_minimum_ok OUTCOME: the settled run's anti-rollback minimum fits OUTCOME (old: at least
# PC_BEFORE_MINIMUM, the minimum before the cut, and at most the old release's sequence
# number; new: the new one's), else PC_WHY and returns 1.
pc_minimum_ok() {
  local want
  case $1 in
    old) [ -n "$PC_MINIMUM" ] && [ "$PC_MINIMUM" -ge "${PC_BEFORE_MINIMUM:?}" ] &&
      [ "$PC_MINIMUM" -le "$PC_OLD_SEQUENCE" ] && return 0
      want="$PC_BEFORE_MINIMUM..$PC_OLD_SEQUENCE" ;;
    *) [ "$PC_MINIMUM" = "$PC_NEW_SEQUENCE" ] && return 0
      want="$PC_NEW_SEQUENCE" ;;
  esac
  PC_WHY="$1 ($PC_VERSION) runs confirmed with anti-rollback minimum '${PC_MINIMUM}', not $want ($PC_SETTLED_LOG)"
  return 1
}

# pc_outcome NAME APPEND ALLOWED RETRY: after a cut, settle and classify into PC_OUTCOME:
# old, new, bricked (no verified image runs), mixed (slot A is neither slot image, or not the
# one whose version runs), wrong (a version ALLOWED does not list), rollback (the
# anti-rollback minimum does not fit the version, pc_minimum_ok), or retry-failed.
pc_outcome() {
  local name=$1 append=$2 allowed=$3 retry=$4 want
  PC_RETRIED=0
  if ! pc_settle "$name" "$append"; then
    PC_OUTCOME=bricked
    return
  fi
  case $PC_VERSION in
    "$PC_OLD_VERSION") PC_OUTCOME=old want=$PC_OLD_SLOT ;;
    "$PC_NEW_VERSION") PC_OUTCOME=new want=$PC_NEW_SLOT ;;
    *) PC_OUTCOME=bricked PC_WHY="settled on version '$PC_VERSION'"; return ;;
  esac
  if ! pc_slot_is "$want"; then
    PC_WHY="app $PC_VERSION runs but slot A is not its slot image"
    PC_OUTCOME=mixed
    return
  fi
  if ! pc_minimum_ok "$PC_OUTCOME"; then
    PC_OUTCOME=rollback
    return
  fi
  if [[ " $allowed " != *" $PC_OUTCOME "* ]]; then
    PC_WHY="settled on $PC_OUTCOME ($PC_VERSION); this scenario allows: $allowed"
    PC_OUTCOME=wrong
    return
  fi
  if [ "$retry" = 1 ] && [ "$PC_OUTCOME" = old ]; then
    # The update was lost or reverted: offered again, it must go through.
    "$PC_RESTAGE" >"$PC/$name.restage.log" 2>&1 ||
      { PC_OUTCOME=retry-failed PC_WHY="offering the update again failed ($PC/$name.restage.log)"; return; }
    if ! pc_settle "$name-retry" "$append" || [ "$PC_VERSION" != "$PC_NEW_VERSION" ] || ! pc_slot_is "$PC_NEW_SLOT"; then
      PC_OUTCOME=retry-failed PC_WHY="the update staged again did not install: ${PC_WHY:-settled on $PC_VERSION}"
      return
    fi
    if ! pc_minimum_ok new; then
      PC_OUTCOME=rollback PC_WHY="after the retry: $PC_WHY"
      return
    fi
    PC_RETRIED=1
  fi
}

# pc_count NAME: add PC_OUTCOME to the scenario's counters; keep the logs of a failure.
pc_count() {
  local name=$1
  case $PC_OUTCOME in
    old) pc_old=$((pc_old + 1)) ;;
    new) pc_new=$((pc_new + 1)) ;;
    mixed) pc_mixed=$((pc_mixed + 1)) ;;
    wrong | retry-failed) pc_wrong=$((pc_wrong + 1)) ;;
    rollback) pc_rollback=$((pc_rollback + 1)) ;;
    *) pc_bricked=$((pc_bricked + 1)) ;;
  esac
  pc_retried=$((pc_retried + PC_RETRIED))
  echo "$name $PC_OUTCOME" >>"$PC/outcomes.txt"
  case $PC_OUTCOME in
    old | new) ;;
    *)
      echo "  $name: $PC_OUTCOME: $PC_WHY"
      mkdir -p "$PC/failed"
      cp "$PC"/*.log "$PC/failed/" 2>/dev/null || true
      cp "$PC_FLASH" "$PC/failed/$name.flash.bin"
      ;;
  esac
}

pc_reset_counts() { pc_cuts=0 pc_old=0 pc_new=0 pc_bricked=0 pc_mixed=0 pc_wrong=0 pc_rollback=0 pc_retried=0; }

# pc_summary NAME DETAIL [COUNTS]: the scenario's line (COUNTS: more "name=N" after cuts=);
# any failure, or no cut at all, fails the script.
pc_summary() {
  local line="power-cut-$1 cuts=$pc_cuts${3:+ $3} old=$pc_old new=$pc_new retried=$pc_retried bricked=$pc_bricked mixed=$pc_mixed wrong=$pc_wrong rollback=$pc_rollback"
  if [ "$pc_cuts" -eq 0 ]; then
    echo "FAIL: $line ($2): no power cut happened, nothing was tested"
    exit 1
  fi
  if [ $((pc_bricked + pc_mixed + pc_wrong + pc_rollback)) -ne 0 ]; then
    echo "FAIL: $line ($2; logs and flash images of the failures in $PC/failed)"
    exit 1
  fi
  echo "ok: $line ($2)"
}

# pc_points TRACE: the cut points of an uncut run's flash trace, one "N" or "N torn" per line:
# every state-partition operation and every erase whole and torn, every PC_STRIDE-th slot
# program whole (every operation both ways with SUITCASE_POWERCUT_ALL=1).
pc_points() {
  sed -n 's/^flash: op \([0-9]*\) \([a-z]*\) \([a-z-]*\)+.*/\1 \2 \3/p' "$1" |
    awk -v stride="$PC_STRIDE" -v all="${SUITCASE_POWERCUT_ALL:-0}" '
      { n = $1; op = $2; part = $3 }
      all == 1 || part == "state" || op == "erase" { print n; print n " torn"; next }
      n % stride == 0 { print n }'
}

# pc_sweep NAME BEFORE APPEND ALLOWED RETRY: cut the first power cycle on flash image BEFORE
# at each of its cut points (pc_points), restart with APPEND until settled, count outcomes.
pc_sweep() {
  local name=$1 before=$2 append=$3 allowed=$4 retry=$5
  local trace=$PC/$name.trace.log total state erases points status n torn
  pc_reset_counts
  PC_BEFORE_MINIMUM=$(pc_minimum_of "$before")
  cp "$before" "$PC_FLASH"
  [ -z "$PC_BEFORE_CUT" ] || "$PC_BEFORE_CUT"
  status=0
  pc_qemu "$trace" "$append flash-trace" || status=$?
  total=$(sed -n 's/^flash: \([0-9]*\) operations this power cycle/\1/p' "$trace" | tail -1)
  if [ "$status" -ne 0 ] || [ -z "$total" ]; then
    echo "FAIL: power-cut-$name: the uncut run failed (status $status; $trace)"
    sed 's/^/  | /' "$trace"
    exit 1
  fi
  state=$(grep -c '^flash: op [0-9]* [a-z]* state+' "$trace" || true)
  erases=$(grep -c '^flash: op [0-9]* erase ' "$trace" || true)
  points=$("$PC_POINTS" "$trace")
  if [ -z "$points" ]; then
    echo "FAIL: power-cut-$name: no cut point in the uncut run's trace ($trace)"
    exit 1
  fi
  echo "  $name: $total flash operations in the uncut power cycle ($state on the state partition, $erases erases);" \
    "cutting at $(grep -c . <<<"$points") points"
  while read -r n torn; do
    cp "$before" "$PC_FLASH"
    [ -z "$PC_BEFORE_CUT" ] || "$PC_BEFORE_CUT"
    status=0
    pc_qemu "$PC/$name.cut.log" "$append cut-after=$n $torn" || status=$?
    pc_cuts=$((pc_cuts + 1))
    if [ "$status" -ne 86 ]; then
      PC_OUTCOME=bricked PC_WHY="cut run at op $n ${torn:-whole}: QEMU exited with status $status, not the cut's 86 ($PC/$name.cut.log)"
    else
      pc_outcome "$name" "$append" "$allowed" "$retry"
    fi
    pc_count "$name-$n${torn:+-torn}"
  done <<<"$points"
  if [ -n "${PC_POINTS_SAID:-}" ]; then
    pc_summary "$name" "$total operations: $PC_POINTS_SAID"
  elif [ "${SUITCASE_POWERCUT_ALL:-0}" = 1 ]; then
    pc_summary "$name" "$total operations, each whole and torn"
  else
    pc_summary "$name" "$total operations: all $state state, all $erases erases whole and torn, every ${PC_STRIDE}th other"
  fi
}

[ -z "${PC_LIBRARY:-}" ] || return 0

pc_began=$SECONDS

step "power cuts: bootloader (es256) and application with the board's power-cut hook"
SUITCASE_TRUST_ANCHOR="$RUN/keys/es256.pub" thumb_cargo build -q -j2 --release -Zbuild-std=core \
  --target "$TARGET" -p mps2-bootloader --features es256,mps2-board/power-cut
cp "$ELF_DIR/mps2-bootloader" "$PC_BOOTLOADER"
for version in 1.0.0 2.0.0; do
  APP_VERSION=$version thumb_cargo build -q -j2 --release -Zbuild-std=core --target "$TARGET" \
    -p mps2-app --features mps2-board/power-cut
  "$OBJCOPY" -O binary "$ELF_DIR/mps2-app" "$RUN/app-cut-$version.bin"
done
release cut-1.0.0 1 cut-v1 basic es256 >/dev/null
release cut-2.0.0 2 cut-v2 basic es256 >/dev/null
pc_built=$SECONDS

step "power cuts: flash images before each scenario"
"$FLASHTOOL" init --slot "$PC_OLD_SLOT" -o "$PC_FLASH" >/dev/null
pc_qemu "$PC/factory.log" "" || { echo "FAIL: power-cut factory boot ($PC/factory.log)"; exit 1; }
cp "$PC_FLASH" "$PC/v1.bin"
"$FLASHTOOL" stage --flash "$PC_FLASH" --slot "$PC_NEW_SLOT" >"$PC/stage.log"
cp "$PC_FLASH" "$PC/v2-staged.bin"
pc_qemu "$PC/trial.log" "no-confirm" || { echo "FAIL: power-cut trial boot ($PC/trial.log)"; exit 1; }
grep -q "app: on trial (boot 1 of 1), not confirming" "$PC/trial.log" ||
  { echo "FAIL: power-cut trial boot did not run v2 on trial ($PC/trial.log)"; exit 1; }
cp "$PC_FLASH" "$PC/v2-trial.bin"

step "power cuts: the host's staging into slot B (simulated part), then the device restarts"
# mps2-flash stage --cut-after N exits 86 when the cut happened (its line says so), 0 when
# the staging finished first: only the 86s are counted as cuts; any other status fails.
stage_ops=$(sed -n 's/.*(\([0-9]*\) flash operations)$/\1/p' "$PC/stage.log")
if ! [ "${stage_ops:-0}" -gt 0 ] 2>/dev/null; then
  echo "FAIL: power-cut-stage: no operation count in mps2-flash stage's output ($PC/stage.log): $(cat "$PC/stage.log")"
  exit 1
fi
pc_reset_counts
PC_BEFORE_MINIMUM=$(pc_minimum_of "$PC/v1.bin")
for n in $(seq 1 "$stage_ops") $((stage_ops + 1)); do
  for torn in "" --torn; do
    cp "$PC/v1.bin" "$PC_FLASH"
    status=0
    # shellcheck disable=SC2086
    "$FLASHTOOL" stage --flash "$PC_FLASH" --slot "$PC_NEW_SLOT" --cut-after "$n" $torn >"$PC/stage-cut.log" 2>&1 ||
      status=$?
    if [ "$n" -gt "$stage_ops" ]; then
      # Beyond the last operation: no cut, the staging finishes (the exit status tells).
      if [ "$status" -ne 0 ] || ! grep -q "update pending ($stage_ops flash operations)" "$PC/stage-cut.log"; then
        echo "FAIL: power-cut-stage: --cut-after $n $torn (beyond the $stage_ops operations) did not stage uncut (status $status): $(cat "$PC/stage-cut.log")"
        exit 1
      fi
      continue
    fi
    if [ "$status" -ne 86 ] || ! grep -q "^power cut during the staging at operation $n;" "$PC/stage-cut.log"; then
      echo "FAIL: power-cut-stage: --cut-after $n $torn did not cut (status $status, not 86): $(cat "$PC/stage-cut.log")"
      exit 1
    fi
    pc_cuts=$((pc_cuts + 1))
    pc_outcome stage "" "old new" 1
    pc_count "stage-$n$torn"
  done
done
pc_summary stage "$stage_ops operations, each whole and torn; --cut-after $((stage_ops + 1)) stages uncut"

step "power cuts: the swap, the trial boot and the confirm (one power cycle after staging)"
pc_sweep swap "$PC/v2-staged.bin" "" "old new" 1

step "power cuts: the revert of an update the application did not confirm"
pc_sweep revert "$PC/v2-trial.bin" "no-confirm" "old" 0

step "power cuts: kill -9 of QEMU at random times (swap run, then the first restart)"
seed=${SUITCASE_POWERCUT_SEED:-$(date +%s)}
RANDOM=$seed
# The window: around the time from the end of the first flash operation (a run cut after
# it) to the end of an uncut run, widened for the host's jitter (single runs; 1 to 10 ms
# apart here); most of a run before it is QEMU's start and the verification of the update,
# which write nothing.
pc_ms() {
  local t0
  cp "$PC/v2-staged.bin" "$PC_FLASH"
  t0=$(date +%s%N)
  pc_qemu "$PC/kill-timing.log" "$1" || true
  echo $((($(date +%s%N) - t0) / 1000000))
}
pc_reset_counts
killed=0 landed=0 trials=0
PC_BEFORE_MINIMUM=$(pc_minimum_of "$PC/v2-staged.bin")
# Up to three rounds: when no kill of a round landed (the host's load changed the timing
# between the measurement and the kills), the window is measured again, widened to twice
# an uncut run, and another round runs; none landing in three fails the scenario.
for round in 1 2 3; do
  first_ms=$(($(pc_ms cut-after=1) * 3 / 4))
  run_ms=$(pc_ms "")
  pc_runs=$((pc_runs + 2)) # the two above, counted in their subshells
  [ "$round" -eq 1 ] || run_ms=$((run_ms * 2))
  [ "$run_ms" -gt "$first_ms" ] || run_ms=$first_ms
  run_ms=$((run_ms + 10))
  for i in $(seq 1 "${SUITCASE_POWERCUT_KILLS:-24}"); do
    cp "$PC/v2-staged.bin" "$PC_FLASH"
    for phase in cut restart; do
      ms=$((first_ms + RANDOM % (run_ms - first_ms)))
      cp "$PC_FLASH" "$PC/kill.before.bin"
      status=0
      pc_qemu "$PC/kill.$phase.log" "" "$((ms / 1000)).$(printf %03d $((ms % 1000)))" || status=$?
      if [ "$status" -eq 137 ]; then
        killed=$((killed + 1))
        # Killed after the run had changed the flash: in the middle of the update.
        cmp -s "$PC/kill.before.bin" "$PC_FLASH" || landed=$((landed + 1))
      fi
    done
    trials=$((trials + 1))
    pc_outcome kill "" "old new" 1
    pc_count "kill-$trials"
  done
  [ "$landed" -eq 0 ] || break
  echo "  kill: no kill of round $round (window ${first_ms}..${run_ms} ms) landed after a flash write; measuring again"
done
# A kill counts as a power cut only if it ended a run after that run had written the flash
# (the others hit QEMU's start or the verification, or came after the run ended); the line
# says cuts=landed and the trials apart, and a run where no kill landed tested nothing.
pc_cuts=$landed
pc_summary kill "seed $seed, $round round(s), two kills per trial at ${first_ms}..${run_ms} ms in the last: $killed of $((2 * trials)) before the run ended, $landed of them after it had written the flash" \
  "trials=$trials"

echo "power cuts: $((SECONDS - pc_began)) s ($((pc_built - pc_began)) s building, $((SECONDS - pc_built)) s for $pc_runs QEMU runs)"

# The application's own download through the gateway, cut (its own server, gateway, campaign).
# shellcheck source=scripts/qemu-powercut-download.sh
. "$(dirname "${BASH_SOURCE[0]}")/qemu-powercut-download.sh"
