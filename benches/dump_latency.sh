#!/usr/bin/env bash
# What one `strobe dump` costs, against the dumps of py-spy, Austin and (on a 3.15 target)
# CPython 3.15's own sampler, on the same target in the same run: wall time of each command from
# start to exit, as the calling shell sees it, and the ratios to strobe's.
#
#   benches/dump_latency.sh                  # 10 rounds x 5 dumps per tool, a 50-frame target
#   ROUNDS=20 PER=5 DEPTH=100 benches/dump_latency.sh
#
# The target is benches/idle_target.py, asleep DEPTH frames deep, under the sid chroot's
# python3.14 (PY); a second one under python3.15 for CPython's `profiling.sampling dump`, which
# reads 3.15 targets only. Austin and CPython's sampler run inside the chroot, strobe and py-spy
# on the host (benches/peers.sh says why and how each is provisioned).
#
# Each round runs every tool PER times back to back, timed by a bash loop ($EPOCHREALTIME around
# each command: fork, exec, the dump, exit) on the tool's side of the chroot, after one untimed
# run per tool; rounds alternate the tools, so load from other work on the machine shifts them
# alike. The table gives per tool the median and the 10th/90th percentiles of the wall time, the
# ratio of medians to strobe's, and the CPU time (user + system) per dump from the loop's
# `times`, which load from other work inflates less than wall time. Every tool's output is checked once for the DEPTH frames, so no error
# path is timed.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-10}
PER=${PER:-5}
DEPTH=${DEPTH:-50}
PY=${PY:-/usr/bin/python3.14}
# shellcheck source=benches/peers.sh
. benches/peers.sh
peers_setup

start_chroot_target "$PY" idle_target.py "$DEPTH"
T314=$TARGET_PID
T315=
if [[ -n "$PY315" ]]; then
    start_chroot_target "$PY315" idle_target.py "$DEPTH"
    T315=$TARGET_PID
fi

# The timing loop, run by bash on the host or in the chroot: one "start end" pair of
# microsecond timestamps per run, or "fail"; then "cpu" and bash's `times`, whose second line
# is the user and system time of all those runs.
# shellcheck disable=SC2016
TIMER='n=$1; shift; for ((i = 0; i < n; i++)); do t0=$EPOCHREALTIME; if "$@" >/dev/null 2>&1; then t1=$EPOCHREALTIME; echo "${t0/./} ${t1/./}"; else echo fail; fi; done; echo cpu; times'

# Tools as "name|where|command...", where is host or chroot; %P is the target's PID.
TOOLS=("strobe|host|$STROBE dump --pid %P")
# STROBE_BEFORE: another strobe binary (say, a build of the previous commit) as one more row.
[[ -n "${STROBE_BEFORE:-}" ]] && TOOLS+=("strobe-before|host|$STROBE_BEFORE dump --pid %P")
[[ -n "$PYSPY" ]] && TOOLS+=("py-spy|host|$PYSPY dump --pid %P")
[[ -n "$AUSTIN" ]] && TOOLS+=("austin|chroot|$AUSTIN -w %P")
TOOLS315=()
if [[ -n "$T315" ]]; then
    TOOLS315=("strobe|host|$STROBE dump --pid %P" "cpython-3.15|chroot|$PY315 -m profiling.sampling dump -a %P")
fi

# run_tool SPEC PID COUNT OUT: COUNT timed runs of the tool against PID, appended to OUT.
run_tool() {
    local name where cmd
    IFS='|' read -r name where cmd <<<"$1"
    read -ra argv <<<"${cmd//%P/$2}"
    if [[ "$where" == host ]]; then
        bash -c "$TIMER" _ "$3" "${argv[@]}" >>"$4"
    else
        in_chroot bash -c "$TIMER" _ "$3" "${argv[@]}" >>"$4"
    fi
}

# frames SPEC PID: how many frames of the target the tool's dump shows (colours stripped).
frames() {
    local name where cmd
    IFS='|' read -r name where cmd <<<"$1"
    read -ra argv <<<"${cmd//%P/$2}"
    if [[ "$where" == host ]]; then
        "${argv[@]}" 2>&1
    else
        in_chroot "${argv[@]}" 2>&1
    fi | sed 's/\x1b\[[0-9;]*m//g' | grep -cE 'idle_target\.py(:|", line )[0-9]' || true
}

echo "target: benches/idle_target.py, ${DEPTH} frames, asleep; $PY (pid $T314)${T315:+, $PY315 (pid $T315)}"
echo "rounds: $ROUNDS x $PER dumps per tool"
machine_line

bench() {
    local pid=$1 spec name
    shift
    for spec in "$@"; do
        name=${spec%%|*}
        echo "$name shows $(frames "$spec" "$pid") frames" >&2
        run_tool "$spec" "$pid" 1 /dev/null
        : >"$BTMP/times.$name"
    done
    for ((r = 0; r < ROUNDS; r++)); do
        for spec in "$@"; do
            run_tool "$spec" "$pid" "$PER" "$BTMP/times.${spec%%|*}"
        done
    done
    python3 - "$BTMP" "$@" <<'PYEOF'
import re, statistics, sys
tmp, specs = sys.argv[1], sys.argv[2:]
rows = []
for spec in specs:
    name = spec.split("|")[0]
    lines = open(f"{tmp}/times.{name}").read().split("\n")
    fails = sum(1 for l in lines if l == "fail")
    cpu = 0.0
    for i, l in enumerate(lines):
        if l == "cpu":
            # `times`: the shell's own user and system time, then its children's.
            for t in lines[i + 2].split():
                m, sec = t.rstrip("s").split("m")
                cpu += int(m) * 60 + float(sec)
    pairs = (l.split() for l in lines if re.fullmatch(r"\d+ \d+", l))
    us = sorted(int(b) - int(a) for a, b in pairs)
    if not us:
        rows.append((name, None, fails))
        continue
    q = statistics.quantiles(us, n=10) if len(us) > 1 else [us[0]] * 9
    rows.append((name, (statistics.median(us), q[0], q[-1], len(us), cpu * 1e6 / (len(us) + fails)), fails))
base = rows[0][1][0] if rows[0][1] else None
base_cpu = rows[0][1][4] if rows[0][1] else None
print("| tool | dumps | wall median ms | p10 ms | p90 ms | median / strobe's | CPU ms per dump | CPU / strobe's |")
print("|---|---|---|---|---|---|---|---|")
for name, st, fails in rows:
    if st is None:
        print(f"| {name} | 0 ({fails} failed) | | | | | | |")
        continue
    med, p10, p90, n, cpu = st
    ratio = f"{med / base:.2f}x" if base else ""
    cpu_ratio = f"{cpu / base_cpu:.2f}x" if base_cpu else ""
    failed = f" ({fails} failed)" if fails else ""
    print(f"| {name} | {n}{failed} | {med / 1e3:.2f} | {p10 / 1e3:.2f} | {p90 / 1e3:.2f} | {ratio} | {cpu / 1e3:.2f} | {cpu_ratio} |")
PYEOF
}

echo
echo "python3.14 target:"
bench "$T314" "${TOOLS[@]}"
if [[ ${#TOOLS315[@]} -gt 0 ]]; then
    echo
    echo "python3.15 target:"
    bench "$T315" "${TOOLS315[@]}"
fi
echo
machine_line
