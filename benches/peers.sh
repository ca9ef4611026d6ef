# shellcheck shell=bash
# Shared by benches/dump_latency.sh and benches/ordinary_rates.sh (sourced, not run): the peers
# strobe is compared with, provisioned under $STROBE_CACHE on first use, and targets run inside
# the sid chroot, where every peer can read them.
#
# Peers:
# - py-spy $PYSPY_VERSION, in its own venv ($CACHE/py-spy-VERSION, shared with
#   benches/native_compare.sh; 0.4.1 cannot read 3.14 or 3.15 targets);
# - Austin: the `austin` binary of PyPI's austin-dist wheel, unpacked into the chroot
#   ($SID/opt/strobe-bench/), since it needs sid's newer glibc;
# - CPython 3.15's own sampler, `python3.15 -m profiling.sampling`, in the chroot (it reads
#   3.15 targets only).
# A peer that cannot be provisioned (no network, no package) is left out with a message: the
# bench still runs and exits 0.
#
# Austin and CPython's sampler find the interpreter through /proc/PID/maps and open the files
# named there, so they need /proc inside the chroot and must see the same mounts as the target.
# `peers_namespace` starts a holder process in a private mount namespace with /proc mounted in
# the chroot (nothing changes outside it; the mount goes away with the namespace), and
# `in_chroot CMD...` runs a command chrooted in that namespace: the targets and those peers.
# strobe and py-spy run on the host and reach the targets through /proc/PID/root.
#
# After `peers_setup`: $STROBE, $PYSPY (may be empty), $AUSTIN (path inside the chroot; may be
# empty), $PY315 (python3.15 in the chroot, or empty), $BTMP (a directory inside the chroot) and
# $BTMP_IN (the same as the chroot sees it). Targets started with `start_chroot_target` are
# killed on exit; $BTMP is removed unless KEEP is set.

CACHE=${STROBE_CACHE:-/var/cache/strobe}
SID=${SID:-$CACHE/sid}
PYSPY_VERSION=${PYSPY_VERSION:-0.4.3}
AUSTIN_VERSION=${AUSTIN_VERSION:-4.0.0}
export LC_ALL=C
# shellcheck source=benches/lib.sh
. benches/lib.sh

peers_setup() {
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
    if [[ -z "${STROBE:-}" ]]; then
        cargo build -q --release --bin strobe
        STROBE="$CARGO_TARGET_DIR/release/strobe"
    fi
    if [[ ! -x "$SID/usr/bin/python3.14" ]]; then
        echo "no sid chroot at $SID (run .ci/provision.sh); nothing to compare" >&2
        exit 0
    fi
    TARGET_PIDS=()
    NS_HOLDER=
    BTMP=$(mktemp -d "$SID/tmp/strobe-bench.XXXXXX")
    BTMP_IN=${BTMP#"$SID"}
    trap peers_cleanup EXIT
    provision_pyspy
    provision_austin
    # For the scripts sourcing this file.
    export PY315=
    if [[ -x "$SID/usr/bin/python3.15" ]]; then
        PY315=/usr/bin/python3.15
    fi
    peers_namespace
}

peers_cleanup() {
    local pid
    for pid in "${TARGET_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    [[ -n "${NS_HOLDER:-}" ]] && kill "$NS_HOLDER" 2>/dev/null
    [[ -n "${NS_PID:-}" ]] && kill "$NS_PID" 2>/dev/null
    if [[ -n "${KEEP:-}" ]]; then
        echo "kept $BTMP" >&2
    else
        rm -rf "$BTMP"
    fi
}

# A Python on the host that can make a venv, for provisioning.
host_python() {
    local py
    for py in /root/.pyenv/versions/3.12.1/bin/python3.12 python3; do
        if "$py" -c 'import venv, ensurepip' 2>/dev/null; then
            echo "$py"
            return
        fi
    done
}

provision_pyspy() {
    local venv="$CACHE/py-spy-$PYSPY_VERSION" py
    PYSPY="$venv/bin/py-spy"
    if "$PYSPY" --version 2>/dev/null | grep -q "$PYSPY_VERSION"; then
        return
    fi
    py=$(host_python)
    if [[ -n "$py" ]]; then
        rm -rf "$venv"
        if "$py" -m venv "$venv"; then
            "$venv/bin/pip" install -q --disable-pip-version-check "py-spy==$PYSPY_VERSION" >&2 ||
                true
        fi
    fi
    if ! "$PYSPY" --version 2>/dev/null | grep -q "$PYSPY_VERSION"; then
        echo "py-spy $PYSPY_VERSION could not be installed: left out" >&2
        PYSPY=
    fi
}

provision_austin() {
    AUSTIN=/opt/strobe-bench/austin-$AUSTIN_VERSION
    [[ -x "$SID$AUSTIN" ]] && return
    local dir="$CACHE/austin" py wheels wheel=
    mkdir -p "$dir" "$SID/opt/strobe-bench"
    py=$(host_python)
    wheels=("$dir"/austin_dist-"$AUSTIN_VERSION"-*.whl)
    if [[ ! -f "${wheels[0]}" && -n "$py" ]]; then
        # pip from a throwaway venv: the wheel is only unpacked, never installed.
        if "$py" -m venv "$BTMP/pipvenv"; then
            "$BTMP/pipvenv/bin/pip" download -q --disable-pip-version-check --no-deps \
                --only-binary :all: -d "$dir" "austin-dist==$AUSTIN_VERSION" >&2 || true
        fi
        wheels=("$dir"/austin_dist-"$AUSTIN_VERSION"-*.whl)
    fi
    [[ -f "${wheels[0]}" ]] && wheel=${wheels[0]}
    if [[ -n "$wheel" ]]; then
        python3 - "$wheel" "$SID$AUSTIN" "$AUSTIN_VERSION" <<'PYEOF' || true
import os, sys, zipfile
wheel, dest, version = sys.argv[1:]
data = zipfile.ZipFile(wheel).read(f"austin_dist-{version}.data/scripts/austin")
with open(dest + ".tmp", "wb") as f:
    f.write(data)
os.chmod(dest + ".tmp", 0o755)
os.rename(dest + ".tmp", dest)
PYEOF
    fi
    if ! chroot "$SID" "$AUSTIN" --version >/dev/null 2>&1; then
        echo "Austin $AUSTIN_VERSION could not be installed: left out" >&2
        AUSTIN=
    fi
}

# A holder process in a private mount namespace, /proc mounted inside the chroot there.
peers_namespace() {
    local ready
    mkfifo "$BTMP/ns"
    unshare --mount --propagation private --fork -- \
        sh -c "mount -t proc proc '$SID/proc' && echo ok && exec sleep 1000000" >"$BTMP/ns" &
    NS_HOLDER=$!
    read -r ready <"$BTMP/ns"
    [[ "$ready" == ok ]] || { echo "could not mount /proc in a private namespace" >&2; exit 1; }
    NS_PID=$(pgrep -P "$NS_HOLDER" | head -1)
}

# in_chroot CMD...: CMD chrooted into $SID inside the namespace.
in_chroot() {
    nsenter --mount --target "$NS_PID" chroot "$SID" "$@"
}

# start_chroot_target PY SCRIPT ARGS...: copy benches/SCRIPT into the chroot, run it there
# under PY (a path inside the chroot) and wait for its READY line; the PID is in $TARGET_PID.
start_chroot_target() {
    local py=$1 script=$2 ready fifo
    shift 2
    cp "benches/$script" "$BTMP/$script"
    fifo="$BTMP/out.${#TARGET_PIDS[@]}"
    mkfifo "$fifo"
    # nsenter itself, not the in_chroot function (a function put in the background runs in a
    # subshell, whose PID would be $!).
    nsenter --mount --target "$NS_PID" chroot "$SID" "$py" "$BTMP_IN/$script" "$@" >"$fifo" &
    TARGET_PID=$!
    TARGET_PIDS+=("$TARGET_PID")
    read -r ready <"$fifo"
    [[ "$ready" == READY ]] || { echo "target said: $ready" >&2; exit 1; }
}
