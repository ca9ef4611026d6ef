#!/usr/bin/env bash
# Resident set of `strobe top` over time, a build before and the build after, in the same run,
# on the many-stacks target (benches/paths_target.py: random paths through 16 functions, a
# stack not seen before nearly every sample).
#
#   BEFORE=/tmp/strobe-before benches/top_memory.sh
#   SECS=600 RATE=1000 EVERY=10 BEFORE=... benches/top_memory.sh
#   EXTRA=/tmp/strobe-variant BEFORE=... benches/top_memory.sh    (a third build, same run)
#
# One target (PY, default pyenv 3.12.1); both builds watch it at once, each `strobe top --pid
# --rate RATE` (default 1000) in its own detached tmux session (top needs a terminal), for SECS
# seconds (default 300). VmRSS of each strobe is read from /proc/PID/status every EVERY seconds
# (default 10), with the load average; the table is one row per reading, in MiB. At the end,
# each strobe's CPU time (user + system, /proc/PID/stat) and the first lines of its screen
# (samples and achieved rate).
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=${BEFORE:?set BEFORE to the strobe binary to compare with}
SECS=${SECS:-300}
RATE=${RATE:-1000}
EVERY=${EVERY:-10}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3}
command -v tmux >/dev/null || { echo "top_memory.sh needs tmux" >&2; exit 1; }
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_tmp
stop_sessions() {
    for name in before after extra; do
        tmux kill-session -t "top-memory-$name-$$" 2>/dev/null || true
    done
    bench_cleanup
}
trap stop_sessions EXIT
start_script "$PY" benches/paths_target.py
machine_line
echo "target: $PY benches/paths_target.py, pid $TARGET_PID; strobe top --rate $RATE"

# watch NAME BIN: `strobe top` of BIN on the target in tmux session NAME; prints strobe's pid.
watch() {
    local name=$1 bin=$2 session="top-memory-$1-$$"
    tmux new-session -d -s "$session" -x 160 -y 50 \
        "nice $(printf '%q' "$bin") top --pid $TARGET_PID --rate $RATE; sleep 3600"
    local pane pid=
    pane=$(tmux list-panes -t "$session" -F '#{pane_pid}')
    # The pane runs a shell that runs nice, which becomes strobe.
    for _ in $(seq 50); do
        pid=$(pgrep -P "$pane" -f " top --pid $TARGET_PID" | head -1 || true)
        [[ -n "$pid" ]] && break
        sleep 0.1
    done
    [[ -n "$pid" ]] || { echo "$name: strobe top did not start" >&2; exit 1; }
    echo "$pid"
}

# cpu PID: user + system CPU seconds of PID so far.
cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat"
}

rss() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo gone
}

names=(before after)
pids=("$(watch before "$BEFORE")" "$(watch after "$STROBE")")
if [[ -n "${EXTRA:-}" ]]; then
    names+=(extra)
    pids+=("$(watch extra "$EXTRA")")
fi
echo
echo "| s | $(printf '%s MiB | ' "${names[@]}")load |"
echo "|---|$(printf -- '---|%.0s' "${names[@]}")---|"
start=$SECONDS
while :; do
    t=$((SECONDS - start))
    row="| $t |"
    for pid in "${pids[@]}"; do
        row+=" $(rss "$pid") |"
    done
    echo "$row $(cut -d' ' -f1-3 /proc/loadavg) |"
    ((t >= SECS)) && break
    sleep "$EVERY"
done
echo
for i in "${!names[@]}"; do
    echo "${names[$i]}: $(cpu "${pids[$i]}") CPU seconds; its header at the end:"
    tmux capture-pane -p -t "top-memory-${names[$i]}-$$" | head -3
done
