#!/usr/bin/env bash
# `strobe dump --locals` against a plain `strobe dump` of the same target: wall time per dump,
# median of RUNS alternating runs each, and the ratio (the issue's goal: within 2x).
#
#   benches/locals.sh                   # pyenv 3.12.1, 50 frames of 10 locals, 30 runs each
#   PY=/root/.pyenv/versions/2.7.18/bin/python2.7 DEPTH=50 RUNS=50 benches/locals.sh
#
# The target (benches/locals_target.py) sleeps at the innermost of DEPTH frames, each with 10
# arguments and locals (ints, a float, strs, None, a list, a dict, a tuple), so every dump reads
# the same stack. Both commands are timed end to end (attach, locate, walk, names, output to
# /dev/null), which is what a user waits for.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
DEPTH=${DEPTH:-50}
RUNS=${RUNS:-30}
source benches/lib.sh
bench_tmp
start_script "$PY" benches/locals_target.py "$DEPTH"

frames=$("$STROBE" dump --pid "$TARGET_PID" | grep -c ' (.*benches/locals_target.py:')
locals=$("$STROBE" dump --pid "$TARGET_PID" --locals | grep -c '^        [a-z]* (\(arg\|local\)) = ')
echo "target: $PY, $frames frames of the script, $locals locals shown; $RUNS runs each"
echo "machine: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$STROBE" "$TARGET_PID" "$RUNS" <<'PYEOF'
import statistics, subprocess, sys, time
strobe, pid, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
cmds = {
    "dump": [strobe, "dump", "--pid", pid],
    "dump --locals": [strobe, "dump", "--pid", pid, "--locals"],
}
times = {k: [] for k in cmds}
for _ in range(2):  # warm the page cache
    for c in cmds.values():
        subprocess.run(c, stdout=subprocess.DEVNULL, check=True)
for _ in range(runs):
    for k, c in cmds.items():
        t = time.perf_counter()
        subprocess.run(c, stdout=subprocess.DEVNULL, check=True)
        times[k].append(time.perf_counter() - t)
for k, v in times.items():
    print("%-14s median %6.2f ms  min %6.2f ms  max %6.2f ms" % (
        k, 1e3 * statistics.median(v), 1e3 * min(v), 1e3 * max(v)))
ratio = statistics.median(times["dump --locals"]) / statistics.median(times["dump"])
print("ratio (median --locals / median plain): %.2fx (goal: within 2x)" % ratio)
PYEOF
