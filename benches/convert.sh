#!/usr/bin/env bash
# `strobe convert` of a large raw recording (to collapsed and svg; EXTS="pb.gz trace.json ..."
# for others, by output extension): peak resident set and wall time of an older build
# ($BEFORE) and this one in the same run, and whether the two write the same bytes (collapsed
# and svg only: the other formats' streamed writers mean the same but may order or number
# things differently, so their sizes are shown).
#
#   BEFORE=/tmp/base-strobe benches/convert.sh            # SECS=60, ROUNDS=1
#   SECS=10 ROUNDS=3 BEFORE=... STROBE=... benches/convert.sh
#
# The target is benches/paths_target.py under pyenv 3.12.1 (random paths through 16 functions:
# a new stack nearly every sample). It is recorded flat out (`record --rate 1000000 --format
# raw`) for SECS, once by each build: $BEFORE's file is in the raw format version it writes
# (4 before FORGET records), which both builds read; this build's (version 5, with FORGET
# records, so that a reader may drop forgotten stacks) only this build reads. Then, ROUNDS
# times, each conversion under /usr/bin/time -v, builds alternating:
#   before on before's file, after on before's file, after on after's file
# for collapsed and svg (`strobe convert FILE -o OUT.txt|OUT.svg`, default options). Reported:
# peak RSS (MiB), elapsed (s), and `cmp` of before's and after's output of before's file (and
# its lines: for collapsed, the distinct stacks by line).
# STROBE_SPILL_BYTES (the folded formats' budget) is passed through when set. OLD_RECORDER, if
# set, is the build that records before's file instead of $BEFORE (e.g. a build writing format
# 4, to compare two builds reading an old file).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-60}
ROUNDS=${ROUNDS:-1}
EXTS=${EXTS:-txt svg}
[[ -n "${BEFORE:-}" && -x "$BEFORE" ]] || { echo "set BEFORE to an older strobe binary" >&2; exit 1; }
PY=/root/.pyenv/versions/3.12.1/bin/python3.12
source benches/lib.sh
bench_tmp
start_script "$PY" benches/paths_target.py

# record BUILD FILE: SECS flat out, raw.
record() {
    "$1" record --pid "$TARGET_PID" --rate 1000000 --duration "$SECS" --format raw --quiet \
        -o "$2"
    echo "$(basename "$2"): $(du -m "$2" | cut -f1) MiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
}
record "${OLD_RECORDER:-$BEFORE}" "$TMP/before.raw"
record "$STROBE" "$TMP/after.raw"
kill "$TARGET_PID"
TARGET_PID=

echo "before: $BEFORE; after: $STROBE; $(nproc) cores"
printf '%-10s %-7s %-12s %10s %9s %9s  %s\n' format build file "peak MiB" "wall s" samples load
# convert NAME BUILD FILE OUT: one conversion, its line.
convert() {
    local name=$1 build=$2 file=$3 out=$4
    /usr/bin/time -v "$build" convert "$file" -o "$out" 2>"$TMP/time" >/dev/null
    local kib wall samples
    kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TMP/time")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$TMP/time" |
        awk -F: '{s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s}')
    samples=$(sed -n 's/.*, \([0-9]*\) samples)$/\1/p' "$TMP/time")
    printf '%-10s %-7s %-12s %10.1f %9.2f %9s  %s\n' "${out##*.}" "$name" "$(basename "$file")" \
        "$(echo "$kib / 1024" | bc -l)" "$wall" "$samples" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
for round in $(seq "$ROUNDS"); do
    for ext in $EXTS; do
        convert before "$BEFORE" "$TMP/before.raw" "$TMP/b.$ext"
        convert after "$STROBE" "$TMP/before.raw" "$TMP/a.$ext"
        convert after "$STROBE" "$TMP/after.raw" "$TMP/a5.$ext"
        if [[ "$ext" != txt && "$ext" != svg ]]; then
            echo "round $round, $ext: before wrote $(stat -c %s "$TMP/b.$ext") bytes, after $(stat -c %s "$TMP/a.$ext")"
        elif cmp -s "$TMP/b.$ext" "$TMP/a.$ext"; then
            echo "round $round, $ext: before and after wrote the same $(stat -c %s "$TMP/a.$ext") bytes ($(wc -l <"$TMP/a.$ext") lines)"
        else
            echo "round $round, $ext: before and after DIFFER"
        fi
    done
done
