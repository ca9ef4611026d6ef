# Shared by the bench scripts (sourced, not run): a release build of strobe, a temporary
# directory that is removed on exit together with the target process, target scripts started
# and waited for, and the sampling benchmark with its target script.
#
# After `bench_tmp`: $STROBE (strobe binary; kept if already set) and $TMP (directory). Set
# $TARGET_PID to have the target killed on exit; `start_script PY SCRIPT ARGS...` starts one
# and waits for its READY line. `bench_setup` is `bench_tmp` plus $BENCH (benchmark binary)
# and $TMP/target.py, started at a given depth by `start_target PY DEPTH`.

bench_tmp() {
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
    if [[ -z "${STROBE:-}" ]]; then
        cargo build -q --release --bin strobe
        STROBE="$CARGO_TARGET_DIR/release/strobe"
    fi
    TMP=$(mktemp -d)
    TARGET_PID=
    trap bench_cleanup EXIT
}

bench_setup() {
    bench_tmp
    cargo bench -q --bench sampling --no-run 2>/dev/null
    BENCH=$(ls -t "$CARGO_TARGET_DIR"/release/deps/sampling-* | grep -v '\.d$' | head -1)
    "$BENCH" script >"$TMP/target.py"
}

bench_cleanup() {
    [[ -n "${TARGET_PID:-}" ]] && kill "$TARGET_PID" 2>/dev/null || true
    rm -rf "$TMP"
}

# start_native_target PY THREADS: benches/native_target.py running THREADS workers (as
# start_script), their thread ids comma-separated in $WORKERS, and its RATE lines drained so
# that its pipe never fills.
start_native_target() {
    start_script "$1" benches/native_target.py "$2"
    WORKERS=$(ls "/proc/$TARGET_PID/task" | grep -vx "$TARGET_PID" | paste -sd,)
    cat <&3 >/dev/null &
}

# start_script PY SCRIPT ARGS...: the target script running (its pid in $TARGET_PID), once
# it said READY; the rest of its output can be read from fd 3.
start_script() {
    rm -f "$TMP/out"
    mkfifo "$TMP/out"
    "$@" >"$TMP/out" &
    TARGET_PID=$!
    exec 3<"$TMP/out"
    local ready
    read -r ready <&3
    [[ "$ready" == READY* ]] || { echo "target said: $ready" >&2; exit 1; }
}

# start_target PY DEPTH: the benchmark's target spinning at a DEPTH-frame stack.
start_target() {
    start_script "$1" "$TMP/target.py" "$2" 3600
}

# machine_line: one line describing this machine and its load, for the report.
machine_line() {
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
}
