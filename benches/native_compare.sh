#!/usr/bin/env bash
# `record --native`, strobe against py-spy, on the same targets in the same run: the profiler's
# CPU per sample, samples per second flat out, and the slowdown it inflicts on the target.
#
#   benches/native_compare.sh                   # 1 and 50 threads; 100, 1000, 10000 Hz, max; 5 s
#   THREADS="1" RATES="100" SECS=3 benches/native_compare.sh
#   STROBES="before=/path/to/old/strobe after=target/release/strobe" ROUNDS=3 benches/native_compare.sh
#   PYSPY=/path/to/py-spy benches/native_compare.sh   # a py-spy already installed
#   STROBES="main=/work/main/target/release/strobe stop=target/release/strobe:--native-stop-preempted" \
#       PEER=none benches/native_compare.sh          # flags for a build; no py-spy
#
# STROBES names several strobe builds (LABEL=BINARY, default: this tree's release build as
# `strobe`; LABEL=BINARY:FLAGS adds FLAGS, comma-separated, to its `record`); each (threads,
# rate) runs py-spy (unless PEER=none) then every build in turn, ROUNDS times (default 1), so
# that before/after and the peer share the same minutes of a shared machine.
#
# The target (benches/native_target.py) runs THREADS threads calling zlib.crc32 in a loop and
# prints its iterations per second every 0.25 s. Per (threads, rate): the target's rate alone
# for SECS, then under py-spy (`record --native --rate R`, stopped by SIGINT after SECS), then under strobe
# (`record --native --rate R --duration SECS`), each compared with the rate alone measured just
# before it. CPU is user + system of the profiler's process (/usr/bin/time), start-up included;
# samples are what each wrote (py-spy's raw counts, strobe's summary). Rate `max` is as fast as
# each can: strobe's --rate 1000000 (back to back), py-spy's --rate 100000. py-spy (the newest
# release, $PYSPY_VERSION, default 0.4.3: faster than 0.4.1, which earlier runs used) comes from
# the Python package registry into $STROBE_CACHE/py-spy-VERSION, the venv benches/peers.sh uses
# (made here if missing).
#
# The slowdown of one run moves by several points on a busy target (50 threads contending for
# the GIL on 2 vCPUs: ±5); with ROUNDS above 1 the run ends with each (threads, rate, tool)'s
# mean slowdown and its standard error over the rounds, paired with their own rates alone.
# SKIP=S leaves the first S seconds of each recording out of its rate (strobe's start-up:
# attaching, the first symbol tables), to measure the steady state alone.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-"1 50"}
RATES=${RATES:-"100 1000 10000 max"}
SECS=${SECS:-5}
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
CACHE=${STROBE_CACHE:-/var/cache/strobe}
PYSPY_VERSION=${PYSPY_VERSION:-0.4.3}
VENV="$CACHE/py-spy-$PYSPY_VERSION"
PEER=${PEER:-py-spy}
if [[ $PEER == none ]]; then
    PYSPY=true
elif [[ -z "${PYSPY:-}" ]]; then
    if ! "$VENV/bin/py-spy" --version 2>/dev/null | grep -q "$PYSPY_VERSION"; then
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "py-spy==$PYSPY_VERSION" >&2
    fi
    PYSPY="$VENV/bin/py-spy"
fi
ROUNDS=${ROUNDS:-1}
SKIP=${SKIP:-0}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_tmp
STROBES=${STROBES:-"strobe=$STROBE"}

peer=""
[[ $PEER == none ]] || peer="py-spy $("$PYSPY" --version | cut -d' ' -f2); "
echo "strobe: $STROBES; $peer$PY; ${SECS} s per run"
machine_line

# mean_rate FILE FROM_LINE: the mean of the RATE lines after line FROM_LINE of FILE.
mean_rate() {
    tail -n +"$(($2 + 1))" "$1" | awk '/^RATE/ { s += $2; n++ } END { if (n) printf "%.1f", s / n; else print 0 }'
}
lines() { wc -l <"$1"; }

printf '%-7s %6s %-7s %9s %10s %12s %13s %9s %9s %5s\n' threads rate tool samples samples/s "CPU µs/smp" "sampler µs/s" merged% slowdown load
for threads in $THREADS; do
    "$PY" benches/native_target.py "$threads" >"$TMP/rates" &
    TARGET_PID=$!
    while ! grep -q READY "$TMP/rates" 2>/dev/null; do sleep 0.1; done
    for rate in $RATES; do
      for _ in $(seq "$ROUNDS"); do
        tools=$STROBES
        [[ $PEER == none ]] || tools="py-spy $STROBES"
        for tool in $tools; do
            bin=${tool#*=}
            tool=${tool%%=*}
            flags=()
            if [[ $bin == *:* ]]; then
                IFS=, read -r -a flags <<<"${bin#*:}"
                bin=${bin%%:*}
            fi
            start=$(lines "$TMP/rates"); sleep "$SECS"; alone=$(mean_rate "$TMP/rates" "$start")
            start=$(lines "$TMP/rates")
            r=$rate
            [[ $rate == max && $tool == py-spy ]] && r=100000
            [[ $rate == max && $tool != py-spy ]] && r=1000000
            if [[ $tool == py-spy ]]; then
                # py-spy's --duration counts samples (duration x rate), so above the rate it
                # reaches it would run for much longer: it is stopped after SECS with SIGINT,
                # on which it writes what it has.
                /usr/bin/time -f "%e %U %S" -o "$TMP/time" timeout -s INT "$SECS" \
                    "$PYSPY" record --native --pid "$TARGET_PID" --rate "$r" --format raw \
                    --output "$TMP/out.txt" >"$TMP/log" 2>&1 || true
                samples=$(awk '{ n += $NF } END { print n + 0 }' "$TMP/out.txt" 2>/dev/null || echo 0)
                merged=-
                steady=-
            else
                /usr/bin/time -f "%e %U %S" -o "$TMP/time" "$bin" record --native "${flags[@]}" \
                    --pid "$TARGET_PID" --rate "$r" --duration "$SECS" -o "$TMP/out.txt" >"$TMP/log" 2>&1 || true
                read -r samples all < <(sed -n 's/.*native stacks merged for \([0-9,]*\) of \([0-9,]*\) samples.*/\1 \2/p' "$TMP/log" | tr -d ,)
                merged=$(awk -v m="${samples:-0}" -v a="${all:-0}" 'BEGIN { if (a) printf "%.2f", 100 * m / a; else print "-" }')
                samples=${all:-0}
                steady=$(sed -n 's/.*sampler used \([0-9.]*\) µs of CPU per sample.*/\1/p' "$TMP/log")
                steady=${steady:--}
            fi
            # The target prints a rate every 0.25 s.
            under=$(mean_rate "$TMP/rates" "$((start + SKIP * 4))")
            # The last line: GNU time first notes a non-zero exit (py-spy stopped by SIGINT).
            read -r wall user sys < <(tail -1 "$TMP/time")
            load=$(cut -d' ' -f1 /proc/loadavg)
            awk -v t="$threads" -v r="$rate" -v tool="$tool" -v n="$samples" -v w="$wall" \
                -v u="$user" -v s="$sys" -v m="$merged" -v a="$alone" -v b="$under" -v st="$steady" \
                -v l="$load" 'BEGIN {
                    printf "%-7s %6s %-7s %9d %10.0f %12.1f %13s %9s %8.1f%% %5s\n", t, r, tool, n,
                        (w > 0 ? n / w : 0), (n > 0 ? (u + s) * 1e6 / n : 0), st, m,
                        (a > 0 ? 100 * (a - b) / a : 0), l }' | tee -a "$TMP/rows"
        done
      done
    done
    kill "$TARGET_PID"; wait "$TARGET_PID" 2>/dev/null || true; TARGET_PID=
done
if ((ROUNDS > 1)); then
    echo
    echo "slowdown over $ROUNDS rounds: mean ± standard error (min–max)"
    awk '{ k = $1 " " $2 " " $3; v = $(NF - 1); sub(/%/, "", v); v += 0
           if (!(k in n)) { order[++keys] = k; lo[k] = v; hi[k] = v }
           n[k]++; s[k] += v; q[k] += v * v
           if (v < lo[k]) lo[k] = v; if (v > hi[k]) hi[k] = v }
         END { for (i = 1; i <= keys; i++) { k = order[i]; m = s[k] / n[k]
                 sd = n[k] > 1 ? sqrt((q[k] - n[k] * m * m) / (n[k] - 1)) : 0
                 split(k, f, " ")
                 printf "%-7s %6s %-7s %6.2f%% ± %.2f (%.1f–%.1f%%)\n", f[1], f[2], f[3], m,
                     sd / sqrt(n[k]), lo[k], hi[k] } }' "$TMP/rows"
fi
