#!/usr/bin/env bash
# Benchmark suitcase-delta against bsdiff, xdelta3, zstd --patch-from and detools on the
# firmware corpus, in one run on this machine. Prints a markdown table (patch bytes, ratio to
# the best anchor of this run, create/apply seconds, applier peak RSS) and the geometric mean.
#
#   scripts/delta-bench.sh [PAIR...]        # corpus: $SUITCASE_CORPUS or ../shared/corpus/firmware
#
# Installs the anchors when missing (apt-get: bsdiff xdelta3 zstd time; pip: detools).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CORPUS=${SUITCASE_CORPUS:-$ROOT/../shared/corpus/firmware}
[ -d "$CORPUS" ] || { echo "corpus not found at $CORPUS (set SUITCASE_CORPUS)" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

need_apt=()
for t in bsdiff xdelta3 zstd; do command -v "$t" >/dev/null || need_apt+=("$t"); done
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v detools >/dev/null || pip install -q detools

if [ -n "${SDELTA:-}" ]; then
  SD=$SDELTA   # a prebuilt `sdelta` example binary
else
  cargo build -q --release -j"${JOBS:-2}" -p suitcase-delta --example sdelta
  SD="$CARGO_TARGET_DIR/release/examples/sdelta"
  # The whole corpus round-trips in release (the same test is #[ignore]d in debug builds).
  SUITCASE_CORPUS="$CORPUS" cargo test -q --release -j"${JOBS:-2}" -p suitcase-delta --test corpus -- --include-ignored >/dev/null
fi

W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
TSV="$W/results.tsv"
: > "$TSV"

# run NAME CREATE_CMD APPLY_CMD PATCH OUT NEW: times both, checks the output, appends a row.
run() {
  local name=$1 create=$2 apply=$3 patch=$4 out=$5 new=$6
  rm -f "$patch" "$out"
  /usr/bin/time -f "%e %M" -o "$W/ct" bash -c "$create" >/dev/null 2>&1 || { echo "  $name: create failed" >&2; return; }
  /usr/bin/time -f "%e %M" -o "$W/at" bash -c "$apply" >/dev/null 2>&1 || { echo "  $name: apply failed" >&2; return; }
  if ! cmp -s "$out" "$new"; then echo "  $name: WRONG OUTPUT" >&2; return; fi
  read -r cs _ < "$W/ct"; read -r as ar < "$W/at"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$PAIR" "$name" "$(stat -c %s "$patch")" "$cs" "$as" "$ar" >> "$TSV"
}

pairs=("$@")
[ ${#pairs[@]} -gt 0 ] || mapfile -t pairs < <(find "$CORPUS" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
for PAIR in "${pairs[@]}"; do
  O="$CORPUS/$PAIR/old.bin"; N="$CORPUS/$PAIR/new.bin"; P="$W/$PAIR"
  echo "== $PAIR" >&2
  osz=$(stat -c %s "$O"); nsz=$(stat -c %s "$N")
  big=$(( osz > nsz ? osz : nsz ))
  seg=$(( big < 262144 ? 4096 : 65536 ))
  mem=$(( (big + seg - 1) / seg * seg + 2 * seg ))
  run suitcase "$SD create $O $N $P.sd" "$SD apply $O $P.sd $P.sd.out" "$P.sd" "$P.sd.out" "$N"
  run suitcase-inplace "$SD create $O $N $P.sdi $mem 4096" "$SD apply $O $P.sdi $P.sdi.out" "$P.sdi" "$P.sdi.out" "$N"
  run bsdiff "bsdiff $O $N $P.bsd" "bspatch $O $P.bsd.out $P.bsd" "$P.bsd" "$P.bsd.out" "$N"
  run xdelta3-9-djw "xdelta3 -e -9 -S djw -f -s $O $N $P.xd" "xdelta3 -d -f -s $O $P.xd $P.xd.out" "$P.xd" "$P.xd.out" "$N"
  run zstd19-patch "zstd -q -f -19 --patch-from=$O $N -o $P.zst" "zstd -q -f -d --patch-from=$O $P.zst -o $P.zst.out" "$P.zst" "$P.zst.out" "$N"
  for c in lzma heatshrink; do
    run "detools-seq-$c" "detools create_patch -c $c $O $N $P.dt$c" "detools apply_patch $O $P.dt$c $P.dt$c.out" "$P.dt$c" "$P.dt$c.out" "$N"
    run "detools-inplace-$c" \
      "detools create_patch_in_place -c $c --memory-size $mem --segment-size $seg $O $N $P.di$c" \
      "cp $O $P.mem && truncate -s $mem $P.mem && detools apply_patch_in_place $P.mem $P.di$c && head -c $nsz $P.mem > $P.di$c.out" \
      "$P.di$c" "$P.di$c.out" "$N"
  done
  "$SD" create "$O" "$N" "$P.sd" | awk -v p="$PAIR" '{print p "\tram_bound\t" $3}' >> "$W/ram.tsv"
done

python3 - "$TSV" "$W/ram.tsv" <<'PY'
import sys, math, collections
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1]) if l.strip()]
ram = {l.split('\t')[0]: l.split('\t')[2].strip() for l in open(sys.argv[2]) if l.strip()}
by = collections.defaultdict(dict)
for pair, tool, size, cs, as_, ar in rows:
    by[pair][tool] = (int(size), float(cs), float(as_), int(ar))
tools = ["bsdiff", "xdelta3-9-djw", "zstd19-patch", "detools-seq-lzma", "detools-seq-heatshrink",
         "detools-inplace-lzma", "detools-inplace-heatshrink"]
print("| pair | suitcase | in-place | best anchor (tool) | ratio | in-place ratio | create s | apply s | apply RSS KiB | ram_bound |")
print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
logs, logs_ip, worst = [], [], 0.0
for pair in sorted(by):
    t = by[pair]
    anchors = [(t[k][0], k) for k in tools if k in t]
    if "suitcase" not in t or not anchors:
        continue
    best, who = min(anchors)
    s = t["suitcase"]; r = s[0] / best; logs.append(math.log(r)); worst = max(worst, r)
    ip = t.get("suitcase-inplace"); ri = ip[0] / best if ip else float("nan")
    if ip: logs_ip.append(math.log(ri))
    print(f"| {pair} | {s[0]:,} | {ip[0] if ip else 0:,} | {best:,} ({who}) | {r:.3f} | {ri:.3f} | {s[1]:.2f} | {s[2]:.2f} | {s[3]:,} | {ram.get(pair, '?')} |")
print()
print(f"geometric mean ratio (sequential): {math.exp(sum(logs)/len(logs)):.3f} over {len(logs)} pairs; worst pair {worst:.3f}")
if logs_ip:
    print(f"geometric mean ratio (in-place):   {math.exp(sum(logs_ip)/len(logs_ip)):.3f}")
print()
print("| pair | " + " | ".join(tools) + " |")
print("|---|" + "---:|" * len(tools))
for pair in sorted(by):
    t = by[pair]
    print(f"| {pair} | " + " | ".join(f"{t[k][0]:,}" if k in t else "-" for k in tools) + " |")
print()
print("apply peak RSS (KiB), same run:")
print("| pair | suitcase | " + " | ".join(tools) + " |")
print("|---|---:|" + "---:|" * len(tools))
for pair in sorted(by):
    t = by[pair]
    print(f"| {pair} | {t['suitcase'][3] if 'suitcase' in t else '-'} | " + " | ".join(f"{t[k][3]:,}" if k in t else "-" for k in tools) + " |")
PY
