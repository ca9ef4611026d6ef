#!/usr/bin/env bash
# Issue 12: can the kernel hand strobe a preempted thread's registers and stack without a
# stop? crates/remote/examples/preempt_probe.rs opens per-thread perf events that sample the
# thread's own switches out (the software context-switch event, or sched:sched_switch filtered
# to switches of a still-runnable thread) on benches/native_target.py's workers, and
#   count:  records per second of each variant, 4 and 50 threads;
#   verify: every worker seen preempted (SwitchWatch) is stopped with ptrace, and its
#           registers and stack compared with the newest preemption record (PreemptWatch;
#           drained PerfThreads; PreemptWatch on workers 30 calls deep, ~32 KiB of stack);
#   cost:   the target's iterations/s with PreemptWatch open on every worker (8 and 32 KiB
#           of stack), and with every switch-out sampled (32 KiB, drained), against without:
#           phases alternated in one run, each against its neighbours without; and the
#           cost of reading a newest record.
#
#   benches/preempt_probe.sh
#   SECS=10 CYCLES=20 PHASE=3 benches/preempt_probe.sh
#
# Needs root (kernel-time perf events, ptrace). Everything runs under nice.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-5}
PHASE=${PHASE:-2}
CYCLES=${CYCLES:-12}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build -q --release -p strobe-remote --example preempt_probe
PROBE="$CARGO_TARGET_DIR/release/examples/preempt_probe"
# shellcheck source=benches/lib.sh
STROBE=${STROBE:-unused}
. benches/lib.sh
bench_tmp
echo "$PY; benches/native_target.py; ${SECS} s per count and check"
machine_line
target() {
    start_script nice "$PY" benches/native_target.py "$@"
    cat <&3 >/dev/null &
}
stop_target() {
    kill "$TARGET_PID"
    wait "$TARGET_PID" 2>/dev/null || true
    TARGET_PID=
}
for threads in 4 50; do
    target "$threads"
    echo "count, $threads threads:"
    nice "$PROBE" count "$TARGET_PID" "$SECS"
    if [ "$threads" = 4 ]; then
        echo "verify, $threads threads:"
        nice "$PROBE" verify "$TARGET_PID" "$SECS"
        nice "$PROBE" verify "$TARGET_PID" "$SECS" drained
    fi
    stop_target
done
target 4 30
echo "verify, 4 threads 30 calls deep:"
nice "$PROBE" verify "$TARGET_PID" "$SECS"
stop_target
echo "cost, 4 threads:"
nice "$PROBE" cost "$PHASE" "$CYCLES" nice "$PY" benches/native_target.py 4
