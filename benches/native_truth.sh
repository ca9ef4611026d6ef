#!/usr/bin/env bash
# How close do `record --native` and `record --native --blocking` come to what the target's
# threads do when no profiler watches them? The reference is the kernel's own account: `perf
# record` of the target's CPU samples and of every context switch (benches/native_truth.py
# says how the two make "running" in strobe's sense: on a CPU or preempted from one). Each
# strobe recording is compared with it by where the worker threads were (the shared object of
# the innermost native frame, and whether in a system call): 1 - the total variation distance.
#
#   benches/native_truth.sh                       # 4 threads, 100 Hz and 1 kHz, 8 s each
#   THREADS=1 RATES=1000 SECS=5 ROUNDS=3 benches/native_truth.sh
#   MODES="default stop" benches/native_truth.sh  # stop: preempted threads stopped too
#   FORMAT=collapsed benches/native_truth.sh      # recordings written as collapsed stacks
#
# Per round: a reference (perf, 4 s of context switches system-wide, then 4 s of the target's
# CPU samples), then per rate strobe's default and --blocking recordings, then a second
# reference: the agreement of the two references is the floor to read the others against.
# Needs root (perf system-wide) and perf.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-4}
RATES=${RATES:-"100 1000"}
SECS=${SECS:-8}
ROUNDS=${ROUNDS:-2}
# Which recordings per rate: default, blocking (--blocking), stop (--native-stop-preempted).
MODES=${MODES:-default blocking}
# How each recording is written: raw, converted afterwards (a raw recording keeps every
# thread, idle ones too, so its rounds capture those as well), or collapsed, written by
# `record` itself in CPU mode (its rounds stop only threads the kernel says run, before their
# read: "Stop first, read after" in crates/sampler/src/stops.rs).
FORMAT=${FORMAT:-raw}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_tmp
echo "strobe: $STROBE; $PY; benches/native_target.py $THREADS; ${SECS} s per recording"
machine_line
start_native_target "$PY" "$THREADS"
reference() {
    perf record -q -a -g -e sched:sched_switch -o "$TMP/sw.data" -- sleep 4 >/dev/null 2>&1
    perf record -q -g -e cpu-clock -F 999 -p "$TARGET_PID" -o "$TMP/cc.data" -- sleep 4 \
        >/dev/null 2>&1
    perf script -i "$TMP/sw.data" -F tid,time,event,trace,ip,sym,dso >"$TMP/sw.txt" 2>/dev/null
    perf script -i "$TMP/cc.data" -F tid,ip,sym,dso >"$TMP/cc.txt" 2>/dev/null
    python3 benches/native_truth.py reference "$WORKERS" "$TMP/cc.txt" "$TMP/sw.txt" >"$1"
}
for round in $(seq "$ROUNDS"); do
    reference "$TMP/ref.json" 2>"$TMP/ref.log"
    echo "round $round: $(cat "$TMP/ref.log"), load $(cut -d' ' -f1 /proc/loadavg)"
    printf '  %-22s %s\n' "" "agreement  the reference's three largest places, as recorded"
    for rate in $RATES; do
        for mode in $MODES; do
            extra=()
            [ "$mode" = blocking ] && extra=(--blocking)
            [ "$mode" = stop ] && extra=(--native-stop-preempted)
            if [ "$FORMAT" = raw ]; then
                "$STROBE" record --native "${extra[@]}" --pid "$TARGET_PID" --rate "$rate" \
                    --duration "$SECS" -o "$TMP/rec.raw" >/dev/null 2>&1
                "$STROBE" convert "$TMP/rec.raw" --function --value samples \
                    -o "$TMP/rec.txt" >/dev/null 2>&1
            else
                "$STROBE" record --native "${extra[@]}" --pid "$TARGET_PID" --rate "$rate" \
                    --duration "$SECS" --function --value samples -o "$TMP/rec.txt" \
                    >/dev/null 2>&1
            fi
            printf '  %-22s %s\n' "$mode at $rate Hz" \
                "$(python3 benches/native_truth.py compare "$TMP/ref.json" "$TMP/rec.txt")"
        done
    done
    reference "$TMP/ref2.json" 2>/dev/null
    python3 - "$TMP/ref.json" "$TMP/ref2.json" <<'PYEOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
tvd = 0.5 * sum(abs(a.get(k, 0) - b.get(k, 0)) for k in set(a) | set(b))
top = sorted(a, key=lambda k: -a[k])[:3]
print("  %-22s %5.1f%%  %s" % ("reference again", 100 * (1 - tvd),
      "  ".join("%s %.1f%%" % (k, 100 * b.get(k, 0)) for k in top)))
PYEOF
done
