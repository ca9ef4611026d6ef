#!/usr/bin/env bash
# strobe's own CPU per sampling round at ordinary rates, against the floor of any paced
# sampler on this machine, measured in the same run.
#
#   benches/round_cost.sh                      # 100 Hz and 1 kHz, both targets, 6 s each
#   SECS=10 RATES=100 OLD=/path/to/older/strobe benches/round_cost.sh
#
# Targets (pyenv 3.12.1 unless PY is set; each prints READY): benches/threads_target.py (1 busy
# thread + 7 sleeping/waiting threads) and benches/paths_target.py (1 thread, random paths
# through 16 functions: a new stack nearly every sample).
#
# Per target and rate:
# - floor: the sampling benchmark's `wake` mode, a thread pacing itself exactly as the sampler
#   does (timer slack 1 ns, park_timeout to each deadline) and doing nothing else: its CPU per
#   wake-up. Nothing that sleeps between samples can cost less per round on this machine.
# - strobe record --format collapsed (idle samples dropped, the default CPU mode) and --format
#   raw (every thread's stack kept, idle ones flagged): CPU of the whole strobe process (every
#   thread: sampler, aggregator, signals) per round, from /proc/PID/task/*/schedstat between 2 s
#   after the start and 1 s before the end, so start-up and the final write are not counted.
# - with OLD set, the same for another strobe binary (before/after a change, same run).
# - with TOP=1, also `strobe top` at its defaults but the rate (idle threads hidden, 1 s
#   refresh), run in a detached tmux session of 200x50 for the same steady window: every thread
#   of the process (sampler, aggregator, the view) per round.
# Runs alternate floor, strobe, old, so that load from elsewhere falls on all of them alike.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-6}
RATES=${RATES:-"100 1000"}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
OLD=${OLD:-}
TOP=${TOP:-}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_setup
machine_line

# cpu_ns PID: CPU nanoseconds of every thread of PID so far.
cpu_ns() {
    local total=0 t
    for t in /proc/"$1"/task/*/schedstat; do
        total=$((total + $(cut -d' ' -f1 "$t" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

# per_round STROBE FORMAT RATE: µs of strobe's CPU per round in its steady part.
per_round() {
    local bin=$1 format=$2 rate=$3 pid a b
    "$bin" record --pid "$TARGET_PID" --rate "$rate" --duration "$SECS" --format "$format" \
        -o "$TMP/out.$format" -q &
    pid=$!
    sleep 2
    a=$(cpu_ns "$pid")
    sleep $((SECS - 3))
    b=$(cpu_ns "$pid")
    wait "$pid"
    python3 -c "print(f'{($b - $a) / 1e3 / (($SECS - 3) * $rate):.1f}')"
}

# per_round_top STROBE RATE: the same for `strobe top` in a detached tmux session.
per_round_top() {
    local bin=$1 rate=$2 session="round-cost-$$" pid a b
    tmux new-session -d -s "$session" -x 200 -y 50 \
        "exec $bin top --pid $TARGET_PID --rate $rate"
    pid=$(tmux list-panes -t "$session" -F '#{pane_pid}')
    sleep 2
    a=$(cpu_ns "$pid")
    sleep $((SECS - 3))
    b=$(cpu_ns "$pid")
    tmux kill-session -t "$session"
    python3 -c "print(f'{($b - $a) / 1e3 / (($SECS - 3) * $rate):.1f}')"
}

printf '%-8s %6s %10s %12s %12s' target rate "floor µs" "collapsed µs" "raw µs"
[[ -n "$OLD" ]] && printf ' %14s %14s' "old collapsed" "old raw"
[[ -n "$TOP" ]] && printf ' %8s' "top µs"
[[ -n "$TOP" && -n "$OLD" ]] && printf ' %8s' "old top"
printf '   (CPU per round)\n'
for name in threads paths; do
    rm -f "$TMP/out"
    mkfifo "$TMP/out"
    "$PY" "benches/${name}_target.py" >"$TMP/out" &
    TARGET_PID=$!
    exec 3<"$TMP/out"
    read -r ready <&3
    [[ "$ready" == READY ]] || { echo "target said: $ready" >&2; exit 1; }
    for rate in $RATES; do
        floor=$("$BENCH" wake "$rate" 3 | sed 's/.*cpu_us_per_wake=//')
        collapsed=$(per_round "$STROBE" collapsed "$rate")
        raw=$(per_round "$STROBE" raw "$rate")
        printf '%-8s %6s %10s %12s %12s' "$name" "$rate" "$floor" "$collapsed" "$raw"
        if [[ -n "$OLD" ]]; then
            printf ' %14s %14s' "$(per_round "$OLD" collapsed "$rate")" "$(per_round "$OLD" raw "$rate")"
        fi
        if [[ -n "$TOP" ]]; then
            printf ' %8s' "$(per_round_top "$STROBE" "$rate")"
            [[ -n "$OLD" ]] && printf ' %8s' "$(per_round_top "$OLD" "$rate")"
        fi
        printf '\n'
    done
    kill "$TARGET_PID"
    wait "$TARGET_PID" 2>/dev/null || true
    TARGET_PID=
done
