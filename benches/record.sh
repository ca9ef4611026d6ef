#!/usr/bin/env bash
# What `strobe record` itself costs per sample, end to end (sampler thread + aggregator + raw
# writer), on a CPU-bound target with a 50- and a 200-frame Python stack.
#
#   benches/record.sh                          # pyenv 3.11.7, 3.12.1, 3.13.0; 5 s per run
#   VERSIONS="3.12.1" DEPTHS=50 SECS=3 benches/record.sh
#   STROBE=/tmp/strobe-old benches/record.sh   # measure another build (no cargo build)
#
# Per run: `strobe record --pid PID --rate RATE --duration SECS -o TMP/x.raw`, flat out
# (--rate 1000000) and at the default 100 Hz. Reported:
# - samples/s: rounds over the recording's duration, from strobe's summary (the target has one
#   thread, so a round is a sample);
# - sampler µs/sample: the sampler thread's own CPU (CLOCK_THREAD_CPUTIME_ID) per round, from
#   the summary line "sampler used ... of CPU per sample";
# - process µs/sample: the whole strobe process's user + system CPU (/usr/bin/time), start-up,
#   aggregator thread and file writing included, divided by the same rounds; the difference
#   to the sampler's figure is everything but the sampler thread.
# The target is the benchmark's script (`cargo bench --bench sampling -- script`): it spins at a
# fixed stack depth and prints READY.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS=${VERSIONS:-"3.11.7 3.12.1 3.13.0"}
DEPTHS=${DEPTHS:-"50 200"}
RATES=${RATES:-"1000000 100"}
SECS=${SECS:-5}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_setup

echo "strobe: $STROBE; ${SECS} s per run"
machine_line
printf '%-8s %6s %8s %10s %11s %14s %14s\n' python depth rate samples samples/s \
    "sampler µs/s." "process µs/s."
for version in $VERSIONS; do
    PY=$(ls /root/.pyenv/versions/"$version"/bin/python3.[0-9]* 2>/dev/null | grep -v config | head -1)
    [[ -x "$PY" ]] || { echo "no interpreter for $version" >&2; exit 1; }
    for depth in $DEPTHS; do
        start_target "$PY" "$depth"
        for rate in $RATES; do
            /usr/bin/time -f "%U %S" -o "$TMP/time" "$STROBE" record --pid "$TARGET_PID" \
                --rate "$rate" --duration "$SECS" -o "$TMP/x.raw" 2>"$TMP/log" >/dev/null || {
                cat "$TMP/log" >&2
                exit 1
            }
            python3 - "$TMP/log" "$TMP/time" "$version" "$depth" "$rate" <<'PYEOF'
import re, sys
log, timing, version, depth, rate = sys.argv[1:]
text = open(log).read()
m = re.search(r"recorded ([\d.]+) s · ([\d,]+) samples", text)
if not m:
    sys.exit("no summary in strobe's output:\n" + text)
secs, samples = float(m.group(1)), int(m.group(2).replace(",", ""))
m = re.search(r"sampler used ([\d.]+) µs of CPU per sample", text)
sampler = m.group(1) if m else "n/a"
user, system = map(float, open(timing).read().split()[-2:])
per = (user + system) / samples * 1e6 if samples else float("nan")
print(f"{version:<8} {depth:>6} {rate:>8} {samples:>10} {samples / secs:>11.0f} "
      f"{sampler:>14} {per:>14.2f}")
PYEOF
        done
        exec 3<&-
        kill "$TARGET_PID" 2>/dev/null || true
        wait "$TARGET_PID" 2>/dev/null || true
        TARGET_PID=
    done
done
