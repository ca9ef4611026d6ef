#!/usr/bin/env bash
# Issue 13's peer table: the CPU a sampler itself uses while sampling a steady target for SECS
# seconds at 100 Hz and 1 kHz, for strobe, py-spy, Austin and CPython 3.15's own sampler, on the
# same targets in the same run, with the ratios to strobe.
#
#   benches/ordinary_rates.sh                       # SECS=10 per sampler, rates 100 and 1000
#   SECS=3 RATES=1000 TARGETS=paths benches/ordinary_rates.sh
#   MEMORY_SECS=600 benches/ordinary_rates.sh --memory   # RSS of strobe record at 1 kHz
#   BEFORE=/work/before-strobe benches/ordinary_rates.sh --memory-peak   # peak RSS per format
#
# Targets (benches/*.py, each printing READY):
# - threads: benches/threads_target.py, 1 busy thread + 7 sleeping/waiting threads;
# - paths: benches/paths_target.py, 1 thread taking random paths through 16 functions (a new
#   stack nearly every sample).
# Each runs in the sid chroot (benches/peers.sh: provisioning, and why the chroot), once under
# python3.14 for strobe, py-spy and Austin, once under python3.15 for CPython's sampler (which
# reads 3.15 targets only) and strobe again, for a ratio on the same target. One target runs at
# a time, so each busy target has a core and the sampler the other.
#
# Commands, each stopping by itself after SECS:
#   strobe record --pid P --rate R --duration SECS --format raw -o FILE
#   py-spy record --pid P --rate R --duration SECS --nonblocking --format raw -o FILE
#   austin -i (1e6/R) us -x SECS -p P -o FILE                            (in the chroot)
#   python3.15 -m profiling.sampling attach -a -r R -d SECS --collapsed -o FILE P   (in the chroot)
# CPU is user + system time of the command and everything it waited for (bash's `times` around
# it, on its side of the chroot): start-up included. "% of a core" is that CPU over the wall
# time; "µs per round" that CPU over the rounds the sampler made (one round reads every thread
# of the process once): strobe's from its summary, py-spy's from its "Samples:" count, Austin's
# from the thread samples it counts ("count", at the end of its output) divided by the target's
# threads, CPython's from its summary ("Captured N samples").
#
# --memory: instead, strobe record at 1 kHz on the paths target (python3.14) for MEMORY_SECS
# (default 600), its resident set read from /proc/PID/status every MEMORY_EVERY seconds (10),
# recording MEMORY_FORMAT (raw; e.g. collapsed for a profile, which keeps every distinct stack).
#
# --memory-peak: instead, strobe record flat out (--rate 1000000) on the paths target (python3.14)
# until PEAK_SAMPLES samples (default 3.2 million, an hour at 1 kHz; the duration is estimated
# from a short first run), once per format of PEAK_FORMATS (default "svg collapsed raw pprof
# speedscope") and per binary ($BEFORE, if set, then $STROBE, alternating, PEAK_ROUNDS rounds,
# default 1), each under /usr/bin/time -v: its peak resident set (including writing the
# output), samples, distinct stacks. Flat out, consecutive samples share more stacks than at
# 1 kHz, so there are fewer distinct stacks than an hour at 1 kHz has: the count is printed.
# STROBE_SPILL_BYTES (the folded formats' memory budget, see crates/output/src/spill/mod.rs and stream.rs) is
# passed through when set.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-10}
RATES=${RATES:-"100 1000"}
TARGETS=${TARGETS:-"threads paths"}
MEMORY=
[[ "${1:-}" == --memory ]] && MEMORY=1
PEAK=
[[ "${1:-}" == --memory-peak ]] && PEAK=1
# shellcheck source=benches/peers.sh
. benches/peers.sh
peers_setup

declare -A SCRIPT=([threads]=threads_target.py [paths]=paths_target.py)

# measure WHERE NAME CMD...: run CMD (host or chroot) with its output in $BTMP/NAME.out/.err,
# then print "WALL_S CPU_S" for it.
# shellcheck disable=SC2016
MEASURE='out=$1; shift; t0=$EPOCHREALTIME; "$@" >"$out.out" 2>"$out.err"; t1=$EPOCHREALTIME; echo "${t0/./} ${t1/./}"; times'
measure() {
    local where=$1 name=$2
    shift 2
    if [[ "$where" == host ]]; then
        bash -c "$MEASURE" _ "$BTMP/$name" "$@"
    else
        in_chroot bash -c "$MEASURE" _ "$BTMP_IN/$name" "$@"
    fi >"$BTMP/$name.time"
}

# threads_of PID: how many threads the target has.
threads_of() {
    local tasks=("/proc/$1/task"/*)
    echo "${#tasks[@]}"
}

if [[ -n "$PEAK" ]]; then
    PEAK_SAMPLES=${PEAK_SAMPLES:-3200000}
    PEAK_FORMATS=${PEAK_FORMATS:-"svg collapsed raw pprof speedscope"}
    PEAK_ROUNDS=${PEAK_ROUNDS:-1}
    start_chroot_target /usr/bin/python3.14 paths_target.py
    machine_line
    # How fast flat out is here, now: 3 s of raw.
    "$STROBE" record --pid "$TARGET_PID" --rate 1000000 --duration 3 --format raw \
        -o "$BTMP/probe.raw" --no-summary >"$BTMP/probe.log" 2>&1
    rate=$(sed -n 's/.* samples · \([0-9.]*\) Hz.*/\1/p' "$BTMP/probe.log" | head -1)
    secs=$(python3 -c "print(max(5, round($PEAK_SAMPLES / $rate)))")
    echo "flat out: $rate samples/s here, so ${secs} s per recording for ~$PEAK_SAMPLES samples (paths target, python3.14, pid $TARGET_PID)"
    echo "| format | binary | peak RSS MiB | wall s | samples | distinct stacks (collapsed lines) | load |"
    echo "|---|---|---|---|---|---|---|"
    bins=("$STROBE")
    [[ -n "${BEFORE:-}" ]] && bins=("$BEFORE" "$STROBE")
    declare -A EXT=([svg]=svg [collapsed]=txt [raw]=raw [pprof]=pb.gz [speedscope]=json [chrome]=trace.json [gecko]=gecko.json)
    for ((round = 1; round <= PEAK_ROUNDS; round++)); do
        for format in $PEAK_FORMATS; do
            for bin in "${bins[@]}"; do
                name=$([[ "$bin" == "${BEFORE:-}" ]] && echo before || echo after)
                out="$BTMP/peak.$name.${EXT[$format]}"
                /usr/bin/time -v "$bin" record --pid "$TARGET_PID" --rate 1000000 \
                    --duration "$secs" --format "$format" -o "$out" --no-summary \
                    >"$BTMP/peak.log" 2>&1 || true
                rss=$(awk '/Maximum resident set size/ {printf "%.1f", $NF / 1024}' "$BTMP/peak.log")
                wall=$(awk '/Elapsed \(wall clock\)/ {n = split($NF, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$BTMP/peak.log")
                samples=$(sed -n 's/.*recorded [0-9.]* s · \([0-9,]*\) samples.*/\1/p' "$BTMP/peak.log" | head -1)
                lines=-
                [[ "$format" == collapsed ]] && lines=$(wc -l <"$out")
                echo "| $format | $name | $rss | $wall | $samples | $lines | $(cut -d' ' -f1-3 /proc/loadavg) |"
                rm -f "$out"
            done
        done
    done
    exit 0
fi

if [[ -n "$MEMORY" ]]; then
    MEMORY_SECS=${MEMORY_SECS:-600}
    MEMORY_EVERY=${MEMORY_EVERY:-10}
    MEMORY_FORMAT=${MEMORY_FORMAT:-raw}
    start_chroot_target /usr/bin/python3.14 paths_target.py
    echo "strobe record --rate 1000 --format $MEMORY_FORMAT for ${MEMORY_SECS} s on benches/paths_target.py (python3.14, pid $TARGET_PID)"
    machine_line
    /usr/bin/time -v -o "$BTMP/memory.time" "$STROBE" record --pid "$TARGET_PID" --rate 1000 \
        --duration "$MEMORY_SECS" --format "$MEMORY_FORMAT" -o "$BTMP/memory.$MEMORY_FORMAT" \
        >"$BTMP/memory.log" 2>&1 &
    REC=$!
    echo "| seconds | RSS KiB |"
    echo "|---|---|"
    start=$SECONDS
    rec=
    while kill -0 "$REC" 2>/dev/null; do
        # strobe is the child of /usr/bin/time.
        if [[ -z "$rec" ]]; then rec=$(pgrep -P "$REC" | head -1 || true); fi
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/${rec:-$REC}/status" 2>/dev/null || true)
        [[ -n "$rss" ]] && echo "| $((SECONDS - start)) | $rss |"
        sleep "$MEMORY_EVERY"
    done
    wait "$REC" || true
    grep -E "recorded|sampler used" "$BTMP/memory.log" || cat "$BTMP/memory.log"
    echo "peak RSS (writing the output included): $(awk '/Maximum resident set size/ {print $NF}' "$BTMP/memory.time") KiB"
    echo "$MEMORY_FORMAT file: $(du -k "$BTMP/memory.$MEMORY_FORMAT" | cut -f1) KiB"
    if [[ "$MEMORY_FORMAT" == collapsed ]]; then
        echo "distinct stacks (lines): $(wc -l <"$BTMP/memory.collapsed")"
    fi
    exit 0
fi

echo "${SECS} s per sampler; rates: $RATES; py-spy ${PYSPY:+$("$PYSPY" --version | cut -d' ' -f2)}; austin ${AUSTIN:+$AUSTIN_VERSION}"
machine_line

RESULTS="$BTMP/results"
: >"$RESULTS"

# run_all TARGET PY: start TARGET under PY (in the chroot) and run every sampler that reads it.
run_all() {
    local target=$1 py=$2 minor rate tag
    minor=${py##*python}
    start_chroot_target "$py" "${SCRIPT[$target]}"
    local pid=$TARGET_PID threads
    threads=$(threads_of "$pid")
    echo "$target under python$minor: pid $pid, $threads threads" >&2
    for rate in $RATES; do
        tag="$target.$minor.$rate"
        measure host "strobe.$tag" "$STROBE" record --pid "$pid" --rate "$rate" \
            --duration "$SECS" --format raw -o "$BTMP/strobe.$tag.raw" --no-summary
        echo "$target $rate strobe-$minor $threads strobe.$tag" >>"$RESULTS"
        if [[ "$minor" == 3.14 ]]; then
            if [[ -n "$PYSPY" ]]; then
                measure host "pyspy.$tag" "$PYSPY" record --pid "$pid" --rate "$rate" \
                    --duration "$SECS" --nonblocking --format raw -o "$BTMP/pyspy.$tag.txt"
                echo "$target $rate py-spy $threads pyspy.$tag" >>"$RESULTS"
            fi
            if [[ -n "$AUSTIN" ]]; then
                measure chroot "austin.$tag" "$AUSTIN" -i "$((1000000 / rate))" -x "$SECS" \
                    -p "$pid" -o "$BTMP_IN/austin.$tag.txt"
                echo "$target $rate austin $threads austin.$tag" >>"$RESULTS"
            fi
        elif [[ "$minor" == 3.15 ]]; then
            measure chroot "cpython.$tag" "$py" -m profiling.sampling attach -a -r "$rate" \
                -d "$SECS" --collapsed -o "$BTMP_IN/cpython.$tag.txt" "$pid"
            echo "$target $rate cpython-3.15 $threads cpython.$tag" >>"$RESULTS"
        fi
    done
    kill "$pid"
}

for target in $TARGETS; do
    run_all "$target" /usr/bin/python3.14
    [[ -n "$PY315" ]] && run_all "$target" "$PY315"
done

python3 - "$BTMP" "$RESULTS" "$SECS" <<'PYEOF'
import re, sys
tmp, results, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
LABEL = {"threads": "1 busy thread + 7 sleeping/waiting threads",
         "paths": "1 thread, random paths through 16 functions"}

def cpu_wall(name):
    lines = open(f"{tmp}/{name}.time").read().split("\n")
    t0, t1 = map(int, lines[0].split())
    cpu = 0.0
    for t in lines[2].split():  # `times`: the shell's own line, then its children's
        m, s = t.rstrip("s").split("m")
        cpu += int(m) * 60 + float(s)
    return cpu, (t1 - t0) / 1e6

def rounds(tool, name, threads):
    path = f"{tmp}/{name}"
    err = open(f"{path}.err", errors="replace").read()
    if tool.startswith("strobe"):
        m = re.search(r"recorded [\d.]+ s · ([\d,]+) samples", err)
        return int(m.group(1).replace(",", "")) if m else None, next(
            (l for l in err.splitlines() if "sampler used" in l), "").replace("strobe: ", "")
    if tool == "py-spy":
        m = re.search(r"Samples: (\d+)", err + open(f"{path}.out", errors="replace").read())
        return int(m.group(1)) if m else None, ""
    if tool == "austin":
        # Austin 4 writes its binary format (MOJO), ending in metadata strings such as
        # "count\0N\0": N threads sampled, so N / threads rounds (checked against -i and -x).
        m = re.search(rb"count\x00(\d+)\x00", open(f"{tmp}/{name}.txt", "rb").read())
        return (int(m.group(1)) // threads if m else None), ""
    if tool == "cpython-3.15":
        text = err + open(f"{path}.out", errors="replace").read()
        m = re.search(r"Captured ([\d,]+) samples", text)
        return int(m.group(1).replace(",", "")) if m else None, ""

cells = {}
notes = []
for line in open(results):
    target, rate, tool, threads, name = line.split()
    cpu, wall = cpu_wall(name)
    n, note = rounds(tool, name, int(threads))
    cells[(target, rate, tool)] = (cpu, wall, n)
    if note:
        notes.append(f"{target} {rate} Hz {tool}: {note}")

tools = ["py-spy", "austin", "cpython-3.15", "strobe-3.14", "strobe-3.15"]
head = {"py-spy": "py-spy", "austin": "Austin", "cpython-3.15": "CPython 3.15 sampler",
        "strobe-3.14": "strobe (3.14)", "strobe-3.15": "strobe (3.15)"}
print("| target | rate | " + " | ".join(head[t] for t in tools) + " | py-spy / strobe | Austin / strobe | CPython / strobe (3.15) |")
print("|---|---|" + "---|" * (len(tools) + 3))
def cell(c):
    if c is None:
        return "–"
    cpu, wall, n = c
    per = f" ({cpu / n * 1e6:.0f} µs per round, {n / secs:.0f} Hz)" if n else ""
    return f"{100 * cpu / wall:.1f}%{per}"
def ratio(a, b):
    """Of CPU % of a core, and of µs per round."""
    if a is None or b is None or b[0] == 0:
        return "–"
    out = f"{(a[0] / a[1]) / (b[0] / b[1]):.1f}x"
    if a[2] and b[2]:
        out += f" ({(a[0] / a[2]) / (b[0] / b[2]):.1f}x per round)"
    return out
for target in LABEL:
    for rate in sorted({k[1] for k in cells if k[0] == target}, key=int):
        c = {t: cells.get((target, rate, t)) for t in tools}
        hz = "1 kHz" if rate == "1000" else f"{rate} Hz"
        print(f"| {LABEL[target]} | {hz} | " + " | ".join(cell(c[t]) for t in tools)
              + f" | {ratio(c['py-spy'], c['strobe-3.14'])} | {ratio(c['austin'], c['strobe-3.14'])}"
              + f" | {ratio(c['cpython-3.15'], c['strobe-3.15'])} |")
print()
print("CPU as % of one core over the command's wall time (start-up included); µs per round = CPU /")
print(f"rounds; Hz = rounds achieved per second of the {secs:.0f} s asked for. Ratios: peer over strobe on")
print("the same target, of CPU % and (in parentheses) of CPU per round.")
for n in notes:
    print("strobe's summary,", n)
PYEOF
machine_line
