#!/usr/bin/env bash
# Does `record --native` read each thread as the kernel has it at the instant of the sample,
# and what does the recording change in how the target's threads run? While strobe records
# `benches/native_target.py` (THREADS threads handing the GIL to each other around zlib.crc32),
# `perf record` traces every context switch on the machine (with callchains, on
# CLOCK_MONOTONIC); the recording is written as a Firefox Profiler file, whose samples carry
# their times. benches/native_instants.py then places each worker sample in the state the
# trace has that worker in at that instant (on a CPU, preempted in user space or in a system
# call, in a ptrace stop, asleep), against the sample's own innermost frame, and compares the
# time spent in each state with a trace of the same length taken with no profiler running.
#
#   benches/native_instants.sh                      # 4 threads, 1 kHz, 8 s per recording
#   RATE=100 ROUNDS=2 benches/native_instants.sh
#   FLAGS="--blocking" benches/native_instants.sh   # flags for `record`
#   FORMAT=raw benches/native_instants.sh           # recorded raw, converted afterwards
#   BURST="1000 2" benches/native_instants.sh       # no strobe: preempt_burst.c on every CPU
#
# With BURST="RATE SPIN_US", strobe is replaced by benches/preempt_burst.c (compiled here):
# one SCHED_FIFO thread per CPU taking that CPU for SPIN_US µs at RATE wake-ups a second and
# reading nothing, to tell what any preemption at that rate changes in the target from what
# strobe's reads change. The trace covers SECS - 4 s from 2 s into each recording. Needs root
# (perf, SCHED_FIFO) and perf.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-4}
RATE=${RATE:-1000}
SECS=${SECS:-8}
ROUNDS=${ROUNDS:-1}
FLAGS=${FLAGS:-}
# gecko: written by `record` itself (CPU mode: the rounds stop only the threads the kernel
# says run); raw: a raw recording (every thread kept, idle ones captured too), converted.
FORMAT=${FORMAT:-gecko}
BURST=${BURST:-}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_tmp
if [ -n "$BURST" ]; then
    cc -O2 -o "$TMP/preempt_burst" benches/preempt_burst.c -lm
    echo "preempt_burst $BURST (rate, µs) on each of $(nproc) CPUs; $PY;" \
        "benches/native_target.py $THREADS"
else
    echo "strobe: $STROBE $FLAGS ($FORMAT); $PY; benches/native_target.py $THREADS; $RATE Hz"
fi
machine_line
start_native_target "$PY" "$THREADS"
trace() {
    perf record -q -k CLOCK_MONOTONIC -a -g -e sched:sched_switch -o "$TMP/sw.data" \
        -- sleep $((SECS - 4)) >/dev/null 2>&1
    perf script -i "$TMP/sw.data" -F tid,time,event,trace,ip,sym,dso >"$1" 2>/dev/null
}
for round in $(seq "$ROUNDS"); do
    trace "$TMP/alone.txt"
    if [ -n "$BURST" ]; then
        bursts=()
        for cpu in $(seq 0 $(($(nproc) - 1))); do
            # shellcheck disable=SC2086 # BURST is two numbers
            "$TMP/preempt_burst" $BURST "$cpu" 1 &
            bursts+=($!)
        done
        sleep 2
        trace "$TMP/during.txt"
        kill "${bursts[@]}"
        echo "round $round, load $(cut -d' ' -f1 /proc/loadavg):"
        python3 benches/native_instants.py "$WORKERS" "$TMP/during.txt" - "$TMP/alone.txt"
        continue
    fi
    # shellcheck disable=SC2086 # FLAGS is a list of flags
    if [ "$FORMAT" = raw ]; then
        "$STROBE" record --native $FLAGS --pid "$TARGET_PID" --rate "$RATE" \
            --duration "$SECS" -o "$TMP/rec.raw" >/dev/null 2>&1 &
    else
        "$STROBE" record --native $FLAGS --pid "$TARGET_PID" --rate "$RATE" \
            --duration "$SECS" --format gecko -o "$TMP/rec.json" >/dev/null 2>&1 &
    fi
    rec=$!
    sleep 2
    trace "$TMP/during.txt"
    wait "$rec"
    if [ "$FORMAT" = raw ]; then
        "$STROBE" convert "$TMP/rec.raw" --format gecko -o "$TMP/rec.json" >/dev/null 2>&1
    fi
    echo "round $round, load $(cut -d' ' -f1 /proc/loadavg):"
    python3 benches/native_instants.py "$WORKERS" "$TMP/during.txt" "$TMP/rec.json" \
        "$TMP/alone.txt"
done
