#!/usr/bin/env bash
# Peak resident set of `strobe record` per profile format, a build before and the build after,
# in the same run, on the many-stacks target (benches/paths_target.py: random paths through 16
# functions, a stack not seen before nearly every sample).
#
#   BEFORE=/work/base-strobe benches/formats_memory.sh
#   FORMATS="pprof chrome" FLAT_SECS=5 SLOW_SECS=10 BEFORE=... benches/formats_memory.sh
#
# One target (PY, default pyenv 3.12.1) for every run. Per format, flat out
# (`--rate 1000000 --duration FLAT_SECS`, default 20), BEFORE then STROBE, one after the other;
# then at 1 kHz (`--rate 1000 --duration SLOW_SECS`, default 120) every format and both builds
# at once, each its own strobe on the same target (at 1 kHz a recording costs a few per cent of
# a core, so they hardly compete). Peak RSS is GNU time's %M (writing the output included);
# samples from strobe's summary; the output's size; the load average when each run ended.
# STROBE_SPILL_BYTES (the streamed writers' memory budget, crates/output/src/stream.rs) is
# passed through when set.
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=${BEFORE:?set BEFORE to the strobe binary to compare with}
FORMATS=${FORMATS:-"pprof speedscope chrome gecko"}
FLAT_SECS=${FLAT_SECS:-20}
SLOW_SECS=${SLOW_SECS:-120}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_tmp
start_script "$PY" benches/paths_target.py
machine_line
echo "target: $PY benches/paths_target.py, pid $TARGET_PID"

declare -A EXT=([pprof]=pb.gz [speedscope]=json [chrome]=trace.json [gecko]=gecko.json [svg]=svg [collapsed]=txt [raw]=raw)

# run NAME BIN FORMAT RATE SECS: one recording under GNU time, in the background.
run() {
    local name=$1 bin=$2 format=$3 rate=$4 secs=$5
    local out="$TMP/$name.$format.${EXT[$format]}"
    /usr/bin/time -f %M -o "$TMP/$name.$format.rss" nice "$bin" record --pid "$TARGET_PID" \
        --rate "$rate" --duration "$secs" --format "$format" -o "$out" --no-summary \
        >"$TMP/$name.$format.log" 2>&1 || true
    ls -l "$out" 2>/dev/null | awk '{print $5}' >"$TMP/$name.$format.size" || true
    rm -f "$out"
    cut -d' ' -f1-3 /proc/loadavg >"$TMP/$name.$format.load"
}

# row FORMAT: the table row of FORMAT's before and after runs.
row() {
    local format=$1 cells=()
    for name in before after; do
        local log="$TMP/$name.$format.log"
        cells+=("$(awk '{printf "%.1f", $1 / 1024}' "$TMP/$name.$format.rss")")
        cells+=("$(sed -n 's/.*recorded [0-9.]* s · \([0-9,]*\) samples.*/\1/p' "$log" | head -1)")
        cells+=("$(awk '{printf "%.1f", $1 / 1048576}' "$TMP/$name.$format.size")")
        cells+=("$(cat "$TMP/$name.$format.load")")
        grep -q "strobe: error" "$log" && { echo "$name $format failed:" >&2; cat "$log" >&2; }
    done
    echo "| $format | ${cells[0]} → **${cells[4]}** | ${cells[1]} / ${cells[5]} | ${cells[2]} / ${cells[6]} | ${cells[3]} / ${cells[7]} |"
}

header() {
    echo "| format | peak RSS MiB, before → after | samples, before / after | output MiB, before / after | load at the end, before / after |"
    echo "|---|---|---|---|---|"
}

echo
echo "flat out (--rate 1000000 --duration $FLAT_SECS), one recording at a time:"
header
for format in $FORMATS; do
    run before "$BEFORE" "$format" 1000000 "$FLAT_SECS"
    run after "$STROBE" "$format" 1000000 "$FLAT_SECS"
    row "$format"
done

echo
echo "1 kHz (--rate 1000 --duration $SLOW_SECS), every recording at once:"
header
runs=()
for format in $FORMATS; do
    run before "$BEFORE" "$format" 1000 "$SLOW_SECS" &
    runs+=($!)
    run after "$STROBE" "$format" 1000 "$SLOW_SECS" &
    runs+=($!)
done
wait "${runs[@]}"
for format in $FORMATS; do
    row "$format"
done
