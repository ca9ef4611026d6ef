#!/usr/bin/env bash
# Do `record --native` stacks (each running thread stopped alone) describe the program as
# whole-process snapshots do (`record --native --blocking`: every thread read in one freeze)?
#
#   benches/native_agreement.sh            # benches/native_target.py, 1 and 4 threads, 10 s
#   THREADS="4" SECS=5 benches/native_agreement.sh
#   RATE=1000 SECS=60 benches/native_agreement.sh   # more samples: a lower noise floor
#   DIFF=10 benches/native_agreement.sh   # and the 10 stacks whose shares differ most
#   STROBES="before=/path/to/old/strobe after=target/release/strobe" ROUNDS=4 benches/native_agreement.sh
#
# STROBES names several strobe builds (LABEL=BINARY, default: this tree's release build as
# `strobe`); every round records with each build in turn (its a, --blocking, b) against the
# same target, so that the builds share the same minutes of a shared machine; one row each.
#
# Per thread count, one target, recorded by both for SECS at RATE (default 200 Hz) in ROUNDS
# interleaved parts (default a, --blocking, default b), with --function (stacks
# of functions; lines vary within a function between any two recordings). Agreement is
# 1 - the total variation distance between the two recordings' distributions of whole
# stacks by wall time: 100% when each stack has the same share in both. Two recordings of the
# same steady program differ by sampling noise (and by the program's drift between them), so
# the same figure for the two default recordings a and b is printed beside it as the floor to
# read it against; a and b are each compared with the --blocking one. The last two
# columns leave out samples taken in a system call (stacks ending in `[syscall]`): where the
# two modes disagree on which threads are idle, that is where it shows (until --blocking knew
# threads woken by the previous freeze, or woken and not yet on a CPU, as waiting: 15% of its
# samples with four threads; see "Idle under --blocking" in crates/sampler/src/round.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-"1 4"}
SECS=${SECS:-10}
RATE=${RATE:-200}
ROUNDS=${ROUNDS:-5}
SEG=$(python3 -c "print(max(1, round($SECS / $ROUNDS)))")
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_setup
STROBES=${STROBES:-"strobe=$STROBE"}
echo "strobe: $STROBES; $PY; ${SECS} s per recording at ${RATE} Hz, $ROUNDS rounds"
machine_line
# agreement A B [running]: 1 - total variation distance of the two files' stack shares; with
# `running`, samples whose innermost frame is `[syscall]` are left out of both first.
agreement() {
    python3 - "$1" "$2" "${3:-}" <<'PYEOF'
import sys
running = sys.argv[3] == "running"
def load(path):
    d = {}
    for line in open(path):
        stack, _, v = line.rstrip("\n").rpartition(" ")
        if running and stack.endswith("[syscall]"):
            continue
        d[stack] = d.get(stack, 0) + int(v)
    total = sum(d.values()) or 1
    return {k: v / total for k, v in d.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
tvd = 0.5 * sum(abs(a.get(k, 0) - b.get(k, 0)) for k in set(a) | set(b))
print("%.1f%%" % (100 * (1 - tvd)))
PYEOF
}
# differences A B N: the N stacks whose shares differ most between the two files.
differences() {
    python3 - "$1" "$2" "$3" <<'PYEOF'
import sys
def load(path):
    d = {}
    for line in open(path):
        stack, _, v = line.rstrip("\n").rpartition(" ")
        d[stack] = d.get(stack, 0) + int(v)
    total = sum(d.values()) or 1
    return {k: v / total for k, v in d.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
rows = sorted(set(a) | set(b), key=lambda k: -abs(a.get(k, 0) - b.get(k, 0)))
for k in rows[: int(sys.argv[3])]:
    frames = k.split(";")
    print("  default %5.2f%%  --blocking %5.2f%%  %s" % (100 * a.get(k, 0), 100 * b.get(k, 0),
          ";".join(frames[:1] + ["..."] + frames[-4:]) if len(frames) > 5 else k))
PYEOF
}
printf '%-8s %-8s %22s %24s %30s %6s\n' threads build "default vs --blocking" "default vs default" \
    "same, not in a system call" load
printf '%-8s %-8s %11s %10s\n' "" "" "(a)" "(b)"
for threads in $THREADS; do
    "$PY" benches/native_target.py "$threads" >"$TMP/rates" &
    TARGET_PID=$!
    while ! grep -q READY "$TMP/rates" 2>/dev/null; do sleep 0.1; done
    for build in $STROBES; do
        label=${build%%=*}
        : >"$TMP/$label.a.txt"; : >"$TMP/$label.b.txt"; : >"$TMP/$label.frozen.txt"
    done
    # Interleaved: ROUNDS times (default, --blocking, default) per build, so every comparison is
    # between recordings made minutes apart at most and the drift of the program's GIL hand-offs
    # with the machine's load falls on both sides (and on every build) alike.
    for _ in $(seq "$ROUNDS"); do
        for build in $STROBES; do
            label=${build%%=*}
            bin=${build#*=}
            for run in a frozen b; do
                blocking=()
                [ "$run" = frozen ] && blocking=(--blocking)
                "$bin" record --native "${blocking[@]}" --function --pid "$TARGET_PID" \
                    --rate "$RATE" --duration "$SEG" -o "$TMP/seg.txt" >/dev/null 2>&1
                cat "$TMP/seg.txt" >>"$TMP/$label.$run.txt"
            done
        done
    done
    load=$(cut -d' ' -f1 /proc/loadavg)
    for build in $STROBES; do
        label=${build%%=*}
        a=$TMP/$label.a.txt; b=$TMP/$label.b.txt; frozen=$TMP/$label.frozen.txt
        printf '%-8s %-8s %11s %10s %24s %15s %14s %6s\n' "$threads" "$label" \
            "$(agreement "$a" "$frozen")" "$(agreement "$b" "$frozen")" \
            "$(agreement "$a" "$b")" \
            "$(agreement "$a" "$frozen" running)" \
            "$(agreement "$a" "$b" running)" "$load"
        if [ "${DIFF:-0}" -gt 0 ]; then
            cat "$a" "$b" >"$TMP/default.txt"
            differences "$TMP/default.txt" "$frozen" "$DIFF"
        fi
    done
    kill "$TARGET_PID"; wait "$TARGET_PID" 2>/dev/null || true; TARGET_PID=
done
