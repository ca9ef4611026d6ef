# Shared by benches/record.sh and benches/compare.sh (sourced, not run): release builds of
# strobe and the sampling benchmark, a temporary directory that is removed on exit together
# with the target process, and the benchmark's target script in it.
#
# After `bench_setup`: $STROBE (strobe binary; kept if already set), $BENCH (benchmark binary),
# $TMP (directory), $TMP/target.py. Set $TARGET_PID to have the target killed on exit, and use
# `start_target PY DEPTH` to start one and wait for its READY line.

bench_setup() {
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
    if [[ -z "${STROBE:-}" ]]; then
        cargo build -q --release --bin strobe
        STROBE="$CARGO_TARGET_DIR/release/strobe"
    fi
    cargo bench -q --bench sampling --no-run 2>/dev/null
    BENCH=$(ls -t "$CARGO_TARGET_DIR"/release/deps/sampling-* | grep -v '\.d$' | head -1)
    TMP=$(mktemp -d)
    TARGET_PID=
    trap bench_cleanup EXIT
    "$BENCH" script >"$TMP/target.py"
}

bench_cleanup() {
    [[ -n "${TARGET_PID:-}" ]] && kill "$TARGET_PID" 2>/dev/null || true
    rm -rf "$TMP"
}

# start_target PY DEPTH: the target spinning at a DEPTH-frame stack, READY read from fd 3.
start_target() {
    rm -f "$TMP/out"
    mkfifo "$TMP/out"
    "$1" "$TMP/target.py" "$2" 3600 >"$TMP/out" &
    TARGET_PID=$!
    exec 3<"$TMP/out"
    local ready
    read -r ready <&3
    [[ "$ready" == READY ]] || { echo "target said: $ready" >&2; exit 1; }
}

# machine_line: one line describing this machine and its load, for the report.
machine_line() {
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
}
