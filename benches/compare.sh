#!/usr/bin/env bash
# strobe against py-spy on the same target in the same run: samples per second (wall) and CPU
# per sample of each sampler, reported as ratios.
#
#   benches/compare.sh                 # pyenv 3.12.1, 50-frame stack, 5 s per tool
#   PY=/root/.pyenv/versions/3.11.7/bin/python3.11 DEPTH=200 SECS=10 benches/compare.sh
#
# Both sample flat out without pausing the target: strobe through the benchmark's `attach` mode
# (Walker::sample_into plus interning every frame, on one thread), py-spy through
# `record --nonblocking --rate PYSPY_RATE --duration SECS`. py-spy's `--duration` is a sample
# count (duration x rate), so at a rate above what it can reach it runs longer than SECS and
# its samples per second are its samples divided by its real elapsed time. Its samples are the
# counts in its raw (collapsed) output; its CPU is user + system time from /usr/bin/time,
# which includes its start-up (reading the target's symbols).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
DEPTH=${DEPTH:-50}
SECS=${SECS:-5}
PYSPY_RATE=${PYSPY_RATE:-2000}
# pyenv shims only work for the pyenv version that installed the tool: prefer the real binary.
PYSPY=${PYSPY:-$(ls /root/.pyenv/versions/*/bin/py-spy 2>/dev/null | head -1 || true)}
PYSPY=${PYSPY:-$(command -v py-spy || true)}
if [[ -z "$PYSPY" || ! -x "$PYSPY" ]]; then
    echo "py-spy is not installed (pip install py-spy); nothing to compare" >&2
    exit 0
fi
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_setup
start_target "$PY" "$DEPTH"

echo "target: $PY, ${DEPTH}-frame stack, pid $TARGET_PID; ${SECS} s per sampler"
machine_line

# py-spy first, then strobe, on the same target process.
/usr/bin/time -f "%e %U %S" -o "$TMP/pyspy.time" \
    "$PYSPY" record --pid "$TARGET_PID" --rate "$PYSPY_RATE" --duration "$SECS" --nonblocking \
    --format raw --output "$TMP/pyspy.txt" >"$TMP/pyspy.log" 2>&1 || { cat "$TMP/pyspy.log" >&2; true; }
LOOP=$("$BENCH" attach "$TARGET_PID" "$SECS")
# And the real command, end to end: sampler, aggregator and raw writer, start-up included.
/usr/bin/time -f "%e %U %S" -o "$TMP/strobe.time" \
    "$STROBE" record --pid "$TARGET_PID" --rate 1000000 --duration "$SECS" --format raw \
    --output "$TMP/strobe.raw" >"$TMP/strobe.log" 2>&1

python3 - "$TMP/pyspy.txt" "$TMP/pyspy.time" "$LOOP" "$SECS" "$TMP/strobe.log" "$TMP/strobe.time" <<'PYEOF'
import re, sys
raw, timing, strobe, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
rec_log, rec_timing = open(sys.argv[5]).read(), sys.argv[6]
samples = 0
for line in open(raw):
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if stack and count.isdigit():
        samples += int(count)
wall, user, system = map(float, open(timing).read().split()[-3:])
if samples == 0:
    sys.exit("py-spy recorded no samples; see its log")
fields = dict(kv.split("=") for kv in strobe.split()[1:])
s_samples, s_wall, s_cpu = int(fields["samples"]), float(fields["wall_s"]), float(fields["cpu_s"])
p_rate, p_cpu = samples / wall, (user + system) / samples
s_rate, s_cpu_per = s_samples / s_wall, s_cpu / s_samples
print(f"{'':8} {'samples':>10} {'wall s':>7} {'samples/s':>11} {'CPU µs/sample':>14}")
print(f"{'py-spy':8} {samples:>10} {wall:>7.2f} {p_rate:>11.0f} {p_cpu * 1e6:>14.1f}")
print(f"{'strobe':8} {s_samples:>10} {s_wall:>7.2f} {s_rate:>11.0f} {s_cpu_per * 1e6:>14.2f}")
m = re.search(r"recorded ([0-9.,]+) s · ([0-9,]+) samples", rec_log)
if not m:
    sys.exit("strobe record printed no summary:\n" + rec_log)
r_secs, r_samples = float(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
r_wall, r_user, r_system = map(float, open(rec_timing).read().split()[-3:])
r_rate, r_cpu = r_samples / r_secs, (r_user + r_system) / r_samples
print(f"{'record':8} {r_samples:>10} {r_secs:>7.2f} {r_rate:>11.0f} {r_cpu * 1e6:>14.2f}")
print("(strobe: the benchmark's sampling loop; record: `strobe record --rate 1000000`, whole")
print(" process CPU including start-up, aggregator and raw writer)")
print(f"strobe/py-spy samples per second: {s_rate / p_rate:.0f}x (record: {r_rate / p_rate:.0f}x)")
print(f"py-spy/strobe CPU per sample:     {p_cpu / s_cpu_per:.0f}x (record: {p_cpu / r_cpu:.0f}x)")
PYEOF
