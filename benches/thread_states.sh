#!/usr/bin/env bash
# What a plain `record` round reads and costs on a many-threaded target, for several strobe
# builds in the same run (before/after a change to what a round reads).
#
#   STROBES="before=/path/to/old/strobe after=target/release/strobe" benches/thread_states.sh
#   THREADS=50 RATES="100 1000" SECS=5 ROUNDS=2 benches/thread_states.sh
#   TARGET=sleepers benches/thread_states.sh
#
# The target is benches/native_target.py THREADS (default 50: threads calling zlib.crc32 in a
# loop), or with TARGET=sleepers benches/threads_target.py with THREADS - 8 more sleepers
# (THREADS threads of which one runs Python, the main one, and the rest sleep or wait). Per round (ROUNDS, default 2), rate (RATES, default "100 1000") and build, in turn so
# that the builds share the same minutes of a shared machine:
# - `record --format collapsed` (the default CPU mode: idle samples dropped) for SECS: the
#   summary's rounds (its "samples") and the sampler thread's CPU per round (its self-cost
#   line, from the thread's CPU clock);
# - the same under `strace -f -e trace=process_vm_readv`: the bytes those calls copied
#   (their return values) and the number of calls, per round. strace slows strobe down, so
#   only the bytes and calls of that run are used, not its CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-50}
RATES=${RATES:-"100 1000"}
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-2}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_tmp
STROBES=${STROBES:-"strobe=$STROBE"}

TARGET=${TARGET:-native}
case $TARGET in
native) target=(benches/native_target.py "$THREADS") ;;
sleepers) target=(benches/threads_target.py "$((THREADS - 8))") ;;
*) echo "TARGET is native or sleepers" >&2; exit 2 ;;
esac
echo "strobe: $STROBES; $PY; ${target[*]}; ${SECS} s per run"
machine_line
"$PY" "${target[@]}" >"$TMP/rates" &
TARGET_PID=$!
while ! grep -q READY "$TMP/rates" 2>/dev/null; do sleep 0.1; done

# rounds FILE: the rounds (the summary's "samples") of a record run's stderr.
rounds() { sed -n 's/.* · \([0-9,]*\) samples · .*/\1/p' "$1" | tr -d , | head -1; }

printf '%-10s %6s %8s %16s %14s %14s %6s\n' build rate rounds "sampler µs/round" "bytes/round" "calls/round" load
for _ in $(seq "$ROUNDS"); do
    for rate in $RATES; do
        for build in $STROBES; do
            bin=${build#*=}
            label=${build%%=*}
            "$bin" record --pid "$TARGET_PID" --rate "$rate" --duration "$SECS" \
                --format collapsed -o "$TMP/out" --summary 2>"$TMP/log" >/dev/null
            n=$(rounds "$TMP/log")
            cpu=$(sed -n 's/.*sampler used \([0-9.]*\) µs of CPU per sample.*/\1/p' "$TMP/log")
            strace -f -qq -e trace=process_vm_readv -o "$TMP/strace" \
                "$bin" record --pid "$TARGET_PID" --rate "$rate" --duration "$SECS" \
                --format collapsed -o "$TMP/out" --summary 2>"$TMP/log" >/dev/null
            sn=$(rounds "$TMP/log")
            read -r bytes calls < <(awk '/process_vm_readv\(/ { n++; if ($NF ~ /^[0-9]+$/) s += $NF }
                END { print s + 0, n + 0 }' "$TMP/strace")
            printf '%-10s %6s %8s %16s %14s %14s %6s\n' "$label" "$rate" "$n" "$cpu" \
                "$((bytes / sn))" "$(python3 -c "print(f'{$calls / $sn:.1f}')")" \
                "$(cut -d' ' -f1 /proc/loadavg)"
        done
    done
done
