#!/usr/bin/env bash
# What `strobe top` at its defaults (100 Hz, 1 s refresh, idle threads hidden) costs on a
# program with thousands of functions, thread by thread.
#
#   OLD=/path/to/older/strobe benches/top_refresh.sh
#   SECS=10 WARM=20 RUNS=2 FUNCS=5000 STROBE=target/release/strobe benches/top_refresh.sh
#
# The target is benches/functions_target.py (pyenv 3.12.1 unless PY is set): random paths
# through FUNCS functions, nearly all of them seen within 20 s at 100 Hz. `strobe top --pid`
# runs in a detached 200x50 tmux session; after WARM seconds (the table has its thousands of
# rows), each thread's CPU time and timeslices (fields 1 and 3 of
# /proc/PID/task/TID/schedstat) are taken over SECS seconds and printed per thread name as µs
# of CPU per round asked for (SECS x 100 rounds) and wake-ups per second. With OLD set, runs
# alternate this build and the old one, RUNS times each, on the same target.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-10}
WARM=${WARM:-20}
RUNS=${RUNS:-2}
FUNCS=${FUNCS:-5000}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
OLD=${OLD:-}
RATE=100
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_tmp
machine_line
start_script "$PY" benches/functions_target.py "$FUNCS"

# threads PID: one line per thread, "name cpu_ns timeslices".
threads() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(cut -d' ' -f1,3 "$t/schedstat")"
    done
}

# one STROBE LABEL: a row per thread of `strobe top` watching the target.
one() {
    local bin=$1 label=$2 session="top-refresh-$$" pid
    tmux new-session -d -s "$session" -x 200 -y 50 "exec $bin top --pid $TARGET_PID"
    pid=$(tmux list-panes -t "$session" -F '#{pane_pid}')
    sleep "$WARM"
    threads "$pid" >"$TMP/a"
    sleep "$SECS"
    threads "$pid" >"$TMP/b"
    tmux kill-session -t "$session"
    LABEL=$label SECS=$SECS RATE=$RATE LOAD="$(cut -d' ' -f1 /proc/loadavg)" \
        python3 - "$TMP/a" "$TMP/b" <<'PY'
import os, sys
from collections import defaultdict

def read(path):
    d = defaultdict(lambda: [0, 0])
    for line in open(path):
        name, cpu, slices = line.split()
        d[name][0] += int(cpu)
        d[name][1] += int(slices)
    return d

a, b = read(sys.argv[1]), read(sys.argv[2])
secs, rate = float(os.environ["SECS"]), float(os.environ["RATE"])
cells = []
total = 0.0
for name in sorted(b):
    cpu = (b[name][0] - a[name][0]) / 1e3 / (secs * rate)
    wakes = (b[name][1] - a[name][1]) / secs
    total += cpu
    cells.append(f"{name} {cpu:.1f} µs/round {wakes:.1f}/s")
print(f"{os.environ['LABEL']:<5} load {os.environ['LOAD']:>5}  total {total:.1f} µs/round  " + "  ".join(cells))
PY
}

for _ in $(seq "$RUNS"); do
    one "$STROBE" this
    [[ -n "$OLD" ]] && one "$OLD" old
done
