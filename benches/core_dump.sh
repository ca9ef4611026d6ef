#!/usr/bin/env bash
# `strobe dump --core` of a large core: the core is mapped, not read, so the dump costs the
# pages the walker touches, not the core's size.
#
#   benches/core_dump.sh                 # a 1 GiB target, gcore'd, dumped 20 times
#   GIB=4 RUNS=10 benches/core_dump.sh
#
# The target (pyenv 3.12 by default; PY chooses) allocates and writes GIB GiB, starts four
# threads, and waits; gcore writes its core (GIB GiB and a little more), the target is ended,
# and `strobe dump --core` runs RUNS times. Printed: the core's size, the wall time of each
# dump (median and slowest), and the peak resident size of one dump (GNU time), which shows
# how little of the core a dump reads. The core sits in the page cache after gcore wrote it;
# a dump of a core not in the cache adds the reads of the pages it touches (a few hundred).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/root/.pyenv/versions/3.12.1/bin/python3.12}
GIB=${GIB:-1}
RUNS=${RUNS:-20}
source benches/lib.sh
bench_tmp

cat >"$TMP/big.py" <<PYEOF
import sys, threading
data = b"\x01" * ($GIB << 30)   # written, so every page is in the core
def work(n):
    threading.Event().wait()
for i in range(4):
    threading.Thread(target=work, args=(i,), name="w%d" % i, daemon=True).start()
print("READY", flush=True)
sys.stdin.readline()
PYEOF
mkfifo "$TMP/out" "$TMP/in"
"$PY" "$TMP/big.py" <"$TMP/in" >"$TMP/out" &
TARGET_PID=$!
exec 4>"$TMP/in" 3<"$TMP/out"
read -r ready <&3
[[ "$ready" == READY ]] || { echo "target said: $ready" >&2; exit 1; }
gcore -o "$TMP/core" "$TARGET_PID" >/dev/null 2>&1
CORE="$TMP/core.$TARGET_PID"
kill "$TARGET_PID"; wait "$TARGET_PID" 2>/dev/null || true; TARGET_PID=
echo "strobe: $STROBE; $PY; core $(du -h --apparent-size "$CORE" | cut -f1) ($(stat -c %s "$CORE") bytes)"
echo "machine: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$STROBE" dump --core "$CORE" >"$TMP/dump.txt"
threads=$(grep -c '^Thread' "$TMP/dump.txt")
[[ "$threads" == 5 ]] || { echo "expected 5 threads in the dump:"; cat "$TMP/dump.txt"; exit 1; }
times=()
for _ in $(seq "$RUNS"); do
    t0=$(date +%s%N)
    "$STROBE" dump --core "$CORE" >/dev/null
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p")
slowest=$(echo "$sorted" | tail -1)
rss=$(/usr/bin/time -f %M "$STROBE" dump --core "$CORE" 2>&1 >/dev/null | tail -1)
awk -v n="$RUNS" -v m="$median" -v s="$slowest" -v r="$rss" 'BEGIN {
    printf "dump --core, %d runs: median %.1f ms, slowest %.1f ms; peak RSS %d KiB\n", n, m / 1000, s / 1000, r
}'
