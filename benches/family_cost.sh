#!/usr/bin/env bash
# Issue 12: strobe's own CPU per round under `record --subprocesses`, on a parent with CHILDREN
# busy children (benches/family_target.py: each child spins and has two threads blocked, whose
# states each round looks up from the kernel's switch records), at each rate of RATES, for each
# build of STROBES, builds alternated, ROUNDS times. The number is the summary's
# "sampler used N µs of CPU per sample": the sampler thread's CPU per round of the family.
#
#   STROBES="before=/tmp/strobe-main after=target/release/strobe" benches/family_cost.sh
#   SECS=10 RATES="100 1000" ROUNDS=3 CHILDREN=4 PYTHON=python3.12 benches/family_cost.sh
#
# Each recording also reports the perf event descriptors strobe had open midway (one set of
# per-CPU switch events per sampled process before the shared reader, one set after), and the
# machine's context switches a second over it (/proc/stat `ctxt`; each is two switch records,
# out and in, which every set of per-CPU events parses).
# LOGS=DIR keeps each recording's output there (BUILD.RATE.ROUND.log).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-10}
RATES=${RATES:-"100 1000"}
ROUNDS=${ROUNDS:-3}
CHILDREN=${CHILDREN:-4}
PYTHON=${PYTHON:-$(ls -d /root/.pyenv/versions/3.12.*/bin/python3 | head -1)}
# shellcheck source=benches/lib.sh
. benches/lib.sh
STROBES=${STROBES:-}
if [[ -z "$STROBES" ]]; then
    bench_tmp
    STROBES="this=$STROBE"
else
    STROBE=${STROBES%% *}
    STROBE=${STROBE#*=}
    bench_tmp
fi

start_script "$PYTHON" benches/family_target.py "$CHILDREN"
echo "target: benches/family_target.py $CHILDREN ($PYTHON), parent pid $TARGET_PID"
machine_line
echo "| rate | build | µs per round | % of a core | rounds | perf fds | switches/s (machine) | load |"
echo "|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
    for ((round = 1; round <= ROUNDS; round++)); do
        for named in $STROBES; do
            name=${named%%=*}
            bin=${named#*=}
            ctxt0=$(awk '/^ctxt/ {print $2}' /proc/stat)
            t0=$EPOCHREALTIME
            "$bin" record --pid "$TARGET_PID" --subprocesses --rate "$rate" --duration "$SECS" \
                --format raw -o "$TMP/out.raw" >"$TMP/log" 2>&1 &
            rec=$!
            sleep $((SECS / 2))
            fds=$(find "/proc/$rec/fd" -lname 'anon_inode:\[perf_event\]' 2>/dev/null | wc -l)
            wait "$rec"
            ctxt1=$(awk '/^ctxt/ {print $2}' /proc/stat)
            switches=$(python3 -c "print(round(($ctxt1 - $ctxt0) / ($EPOCHREALTIME - $t0)))")
            cp "$TMP/log" "${LOGS:-$TMP}/$name.$rate.$round.log" 2>/dev/null || true
            per=$(sed -n 's/.*sampler used \([0-9.]*\) µs of CPU per sample (\([0-9.]*\)% of one core).*/\1 \2/p' "$TMP/log")
            rounds=$(sed -n 's/.*recorded [0-9.]* s · \([0-9,]*\) samples.*/\1/p' "$TMP/log" | head -1)
            echo "| $rate Hz | $name | ${per% *} | ${per#* } | ${rounds:--} | $fds | $switches | $(cut -d' ' -f1-3 /proc/loadavg) |"
        done
    done
done
