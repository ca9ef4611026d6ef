#!/usr/bin/env bash
# Resident memory of long `strobe record` runs at 1 kHz, one per profile format, all at once on
# the many-stacks target (benches/paths_target.py: random paths through 16 functions, a stack
# not seen before nearly every sample), followed over time: issue 13's "≤ 15 MB RSS for an hour
# at 1 kHz".
#
#   benches/long_memory.sh                        # an hour, every format
#   SECS=600 STEP=30 FORMATS="gecko svg" benches/long_memory.sh
#
# Every STEP seconds (default 60) each recorder's VmRSS is read from /proc; the table gives it at
# a few points of the run, the largest reading, and GNU time's peak (%M, which also covers
# writing the output at the end). STROBE (a strobe binary) and PY (the target's interpreter,
# default pyenv 3.12.1) may be set; STROBE_SPILL_BYTES is passed through.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-3600}
STEP=${STEP:-60}
RATE=${RATE:-1000}
FORMATS=${FORMATS:-"pprof speedscope chrome gecko svg collapsed raw"}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_tmp
start_script nice "$PY" benches/paths_target.py
machine_line
echo "target: $PY benches/paths_target.py (nice), pid $TARGET_PID; $RATE Hz for $SECS s, RSS every $STEP s"

declare -A EXT=([pprof]=pb.gz [speedscope]=json [chrome]=trace.json [gecko]=gecko.json [svg]=svg [collapsed]=txt [raw]=raw)
declare -A PID=()
for format in $FORMATS; do
    /usr/bin/time -f %M -o "$TMP/$format.peak" "$STROBE" record --pid "$TARGET_PID" --rate "$RATE" \
        --duration "$SECS" --format "$format" -o "$TMP/out.${EXT[$format]}" --no-summary \
        >"$TMP/$format.log" 2>&1 &
    PID[$format]=$!
done

# The recorders are the `time` processes' children.
declare -A REC=()
for format in $FORMATS; do
    until REC[$format]=$(pgrep -P "${PID[$format]}"); do :; done
done

# rss PID: its VmRSS in KiB, empty once it has exited.
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }

start=$(date +%s)
while :; do
    sleep "$STEP"
    now=$(($(date +%s) - start))
    alive=0
    line="t=${now}s load $(cut -d' ' -f1 /proc/loadavg):"
    for format in $FORMATS; do
        kib=$(rss "${REC[$format]}")
        [[ -n "$kib" ]] || continue
        alive=1
        echo "$now $kib" >>"$TMP/$format.rss"
        line+=" $format $((kib / 1024))M"
    done
    [[ $alive == 1 ]] || break
    echo "$line"
done
wait "${PID[@]}"

# at FORMAT SECONDS: the first reading at or after SECONDS, in MiB.
at() { awk -v t="$2" '$1 >= t {printf "%.1f", $2 / 1024; exit}' "$TMP/$1.rss"; }

points=(60 $((SECS / 4)) $((SECS / 2)) $((SECS * 3 / 4)) $((SECS - STEP)))
echo
echo "| format | RSS MiB at ${points[*]} s | largest reading MiB | peak incl. writing (GNU time) MiB | samples | output MiB |"
echo "|---|---|---|---|---|---|"
for format in $FORMATS; do
    cells=()
    for t in "${points[@]}"; do cells+=("$(at "$format" "$t")"); done
    largest=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {printf "%.1f", m / 1024}' "$TMP/$format.rss")
    peak=$(awk '{printf "%.1f", $1 / 1024}' "$TMP/$format.peak")
    samples=$(sed -n 's/.*recorded [0-9.]* s · \([0-9,]*\) samples.*/\1/p' "$TMP/$format.log" | head -1)
    size=$(stat -c %s "$TMP/out.${EXT[$format]}" 2>/dev/null | awk '{printf "%.1f", $1 / 1048576}')
    grep -q "strobe: error" "$TMP/$format.log" && { echo "$format failed:" >&2; cat "$TMP/$format.log" >&2; }
    echo "| $format | ${cells[*]} | $largest | $peak | $samples | $size |"
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
