#!/usr/bin/env bash
# Flat-out samples per second with interpreter-activity tracking on, against plain sampling,
# in the same run (issue 15's benchmark):
#
#   benches/activity.sh                          # 5 s per run, 3 runs each
#   SECS=10 RUNS=5 OLD=/path/to/older/strobe benches/activity.sh
#
# - exceptions: tests/targets/exceptions.py under pyenv 3.12.1 (a third of its time inside an
#   `except` block). Exception and GC state are read in every sample (no switch), so "plain"
#   is OLD, a strobe built before exception tracking (e.g. `git worktree add /tmp/old cfddf54`
#   and a release build there); without OLD that row is skipped. Also `--mode exception`.
# - asyncio: tests/targets/asyncio_shares.py under the sid chroot's python3.14 (three tasks
#   taking turns, chains of awaits): `record` with and without `--async`; then the same
#   target under PY (pyenv 3.12.1: task chains from the cached task graph of 3.8–3.13).
# Each run: `strobe record --rate 1000000 --duration SECS --format raw`, whose summary gives
# the rate achieved. Runs alternate between the variants so that load falls on all alike;
# the median of RUNS is reported, with the ratio to plain.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-5}
RUNS=${RUNS:-3}
OLD=${OLD:-}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
SID=${SID:-/var/cache/strobe/sid}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_setup
machine_line

# hz BIN ARGS...: the rate one flat-out recording of $TARGET_PID achieved.
hz() {
    local bin=$1
    shift
    "$bin" record --pid "$TARGET_PID" --rate 1000000 --duration "$SECS" --format raw \
        -o "$TMP/out.raw" "$@" 2>&1 | sed -n 's/.* samples · \([0-9.,]*\) Hz.*/\1/p' | tr -d ,
}

median() {
    python3 -c "import statistics,sys; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.0f}')" "$@"
}

# start CMD...: start a target that prints READY <pid>; TARGET_PID is its pid. Its stdin is a
# FIFO this script holds open (fd 5), so a target that ends on EOF runs until we exit.
start() {
    rm -f "$TMP/ready"
    mkfifo "$TMP/ready"
    "$@" <"$TMP/stdin" >"$TMP/ready" &
    exec 4<"$TMP/ready"
    local word pid
    read -r word pid <&4
    [[ "$word" == READY ]] || { echo "target said: $word $pid" >&2; exit 1; }
    TARGET_PID=$pid
}

stop() {
    kill "$TARGET_PID" 2>/dev/null || true
    TARGET_PID=
}

mkfifo "$TMP/stdin"
exec 5<>"$TMP/stdin"
printf '%-12s %-28s %12s %8s\n' target variant "samples/s" ratio
start "$PY" tests/targets/exceptions.py
declare -a new=() exc=() old=()
for _ in $(seq "$RUNS"); do
    new+=("$(hz "$STROBE")")
    exc+=("$(hz "$STROBE" --mode exception)")
    [[ -n "$OLD" ]] && old+=("$(hz "$OLD")")
done
stop
base=$(median "${new[@]}")
if [[ -n "$OLD" ]]; then
    plain=$(median "${old[@]}")
    printf '%-12s %-28s %12s %8s\n' exceptions "plain (OLD, no tracking)" "$plain" 1.00
    base_ratio=$(python3 -c "print(f'{$base / $plain:.2f}')")
    printf '%-12s %-28s %12s %8s\n' exceptions "tracking (this build)" "$base" "$base_ratio"
else
    plain=$base
    printf '%-12s %-28s %12s %8s\n' exceptions "tracking (this build)" "$base" 1.00
fi
m=$(median "${exc[@]}")
printf '%-12s %-28s %12s %8s\n' exceptions "--mode exception" "$m" "$(python3 -c "print(f'{$m / $plain:.2f}')")"

cp tests/targets/asyncio_shares.py "$SID/tmp/strobe-bench-asyncio.py"
start chroot "$SID" python3.14 /tmp/strobe-bench-asyncio.py
declare -a plain_a=() tasks=() old_a=()
for _ in $(seq "$RUNS"); do
    plain_a+=("$(hz "$STROBE")")
    tasks+=("$(hz "$STROBE" --async)")
    [[ -n "$OLD" ]] && old_a+=("$(hz "$OLD")")
done
stop
rm -f "$SID/tmp/strobe-bench-asyncio.py"
p=$(median "${plain_a[@]}")
t=$(median "${tasks[@]}")
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
if [[ -n "$OLD" ]]; then
    o=$(median "${old_a[@]}")
    printf '%-12s %-28s %12s %8s\n' asyncio "plain (OLD, no tracking)" "$o" 1.00
    printf '%-12s %-28s %12s %8s\n' asyncio "tracking (this build)" "$p" "$(ratio "$p" "$o")"
    printf '%-12s %-28s %12s %8s\n' asyncio "--async" "$t" "$(ratio "$t" "$o")"
fi
printf '%-12s %-28s %12s %8s\n' asyncio "plain (this build)" "$p" 1.00
printf '%-12s %-28s %12s %8s\n' asyncio "--async" "$t" "$(ratio "$t" "$p")"

start "$PY" tests/targets/asyncio_shares.py
declare -a plain_l=() tasks_l=()
for _ in $(seq "$RUNS"); do
    plain_l+=("$(hz "$STROBE")")
    tasks_l+=("$(hz "$STROBE" --async)")
done
stop
p=$(median "${plain_l[@]}")
t=$(median "${tasks_l[@]}")
printf '%-12s %-28s %12s %8s\n' "asyncio-3.12" plain "$p" 1.00
printf '%-12s %-28s %12s %8s\n' "asyncio-3.12" "--async" "$t" "$(ratio "$t" "$p")"
