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
# interleaved parts (default a, --blocking, default b), converted with --function (stacks
# of functions; lines vary within a function between any two recordings). Agreement is
# 1 - the total variation distance between the two recordings' distributions of whole
# stacks by wall time: 100% when each stack has the same share in both. Two recordings of the
# same steady program differ by sampling noise (and by the program's drift between them), so
# the same figure for the two default recordings a and b is printed beside it as the floor to
# read it against; a and b are each compared with the --blocking one.
#
# Each figure is computed twice from the same recordings (raw, converted twice by this tree's
# strobe): by weight (`--value micros`, wall time: a late sample stands for every interval it
# missed) and by count (`--value samples`, every sample 1). The count-based figure measures the
# merge (which stack a capture finds) without the clock's weights, whose noise after whole-VM
# stalls can dominate a recording (one sample may stand for hundreds of ms): so each build's
# rows end with the effective sample size of each recording's weights (Kish: (sum w)^2 /
# sum w^2, as the summary reports it), and its share of the sample count. The last two
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
# weight_sums SPEEDSCOPE: "n sum squares" of its samples' weights (ms).
weight_sums() {
    python3 - "$1" <<'PYEOF'
import json, sys
w = [x / 1e6 for p in json.load(open(sys.argv[1]))["profiles"] for x in p.get("weights", [])]
print(len(w), sum(w), sum(x * x for x in w))
PYEOF
}
# effective SUMS: Kish's effective sample size of the recordings whose sums SUMS holds,
# (sum w)^2 / sum w^2, and its share of their sample count.
effective() {
    python3 - "$1" <<'PYEOF'
import sys
n = s = q = 0.0
for line in open(sys.argv[1]):
    a, b, c = map(float, line.split())
    n, s, q = n + a, s + b, q + c
print("%d/%d=%.0f%%" % (s * s / q, n, 100 * s * s / q / n) if q else "-")
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
printf '%-8s %-8s %-7s %22s %24s %30s %6s\n' threads build value "default vs --blocking" \
    "default vs default" "same, not in a system call" load
printf '%-8s %-8s %-7s %11s %10s\n' "" "" "" "(a)" "(b)"
for threads in $THREADS; do
    "$PY" benches/native_target.py "$threads" >"$TMP/rates" &
    TARGET_PID=$!
    while ! grep -q READY "$TMP/rates" 2>/dev/null; do sleep 0.1; done
    for build in $STROBES; do
        label=${build%%=*}
        for run in a frozen b; do
            : >"$TMP/$label.$run.sums"
            for value in micros samples; do : >"$TMP/$label.$value.$run.txt"; done
        done
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
                "$bin" record --native "${blocking[@]}" --pid "$TARGET_PID" \
                    --rate "$RATE" --duration "$SEG" -o "$TMP/seg.raw" >/dev/null 2>&1
                # Converted by this tree's strobe, which has --value (older builds' raw
                # recordings read the same).
                for value in micros samples; do
                    "$STROBE" convert "$TMP/seg.raw" --function --value "$value" \
                        -o "$TMP/seg.txt" >/dev/null 2>&1
                    cat "$TMP/seg.txt" >>"$TMP/$label.$value.$run.txt"
                done
                # Every sample's weight (speedscope keeps one per sample), for the effective
                # sample size.
                "$STROBE" convert "$TMP/seg.raw" --function -o "$TMP/seg.speedscope.json" \
                    >/dev/null 2>&1
                weight_sums "$TMP/seg.speedscope.json" >>"$TMP/$label.$run.sums"
            done
        done
    done
    load=$(cut -d' ' -f1 /proc/loadavg)
    for build in $STROBES; do
        label=${build%%=*}
        for value in micros samples; do
            a=$TMP/$label.$value.a.txt; b=$TMP/$label.$value.b.txt
            frozen=$TMP/$label.$value.frozen.txt
            printf '%-8s %-8s %-7s %11s %10s %24s %15s %14s %6s\n' "$threads" "$label" \
                "$value" "$(agreement "$a" "$frozen")" "$(agreement "$b" "$frozen")" \
                "$(agreement "$a" "$b")" \
                "$(agreement "$a" "$frozen" running)" \
                "$(agreement "$a" "$b" running)" "$load"
            if [ "${DIFF:-0}" -gt 0 ]; then
                cat "$a" "$b" >"$TMP/default.txt"
                differences "$TMP/default.txt" "$frozen" "$DIFF"
            fi
        done
        echo "         effective sample size (of the samples kept): a" \
            "$(effective "$TMP/$label.a.sums"), --blocking $(effective "$TMP/$label.frozen.sums"), b $(effective "$TMP/$label.b.sums")"
    done
    kill "$TARGET_PID"; wait "$TARGET_PID" 2>/dev/null || true; TARGET_PID=
done
