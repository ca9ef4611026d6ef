#!/usr/bin/env bash
# Provision every interpreter the test suite needs, and cache the result on this machine.
#
# - pyenv builds (2.7 .. 3.13.0) are part of the machine image, under $PYENV_ROOT (default
#   /root/.pyenv); we only verify they are there.
# - Debian sid's python3.13/3.14/3.15 (+ -dbg, -dev, one -nopie) need a newer glibc than the host,
#   so they live in a sid chroot under $STROBE_CACHE (default /var/cache/strobe).
# - Two unprivileged users for the permission-denied tests, and every host tool a test runs.
#
# The interpreter list must match crates/testkit/src/interpreters.rs (the tests' registry).
#
# Re-running is cheap: a stamp file records what was installed and the work is skipped when it matches.
# Prints the chroot path on the last line of stdout.
set -euo pipefail

CACHE=${STROBE_CACHE:-/var/cache/strobe}
PYENV_ROOT=${PYENV_ROOT:-/root/.pyenv}
CHROOT="$CACHE/sid"
SID_PKGS=(
  python3.13 python3.13-dbg python3.13-dev
  python3.14 python3.14-dbg python3.14-dev python3.14-nopie
  python3.15 python3.15-dbg python3.15-dev
)
PYENV_VERSIONS=(2.7.18 3.6.15 3.7.16 3.8.18 3.9.18 3.10.13 3.11.7 3.12.1 3.13.0)
STAMP="$CHROOT/.strobe-provisioned"
WANT="v2 ${SID_PKGS[*]}"

log() { echo "provision: $*" >&2; }

missing=0
for v in "${PYENV_VERSIONS[@]}"; do
  if [ ! -x "$PYENV_ROOT/versions/$v/bin/python${v%.*}" ]; then
    log "MISSING pyenv interpreter $PYENV_ROOT/versions/$v (part of the machine image)"
    missing=1
  fi
done
[ -x /usr/bin/python3.11 ] || { log "MISSING /usr/bin/python3.11 (Debian python3.11)"; missing=1; }
[ "$missing" = 0 ] || { log "required interpreters are missing"; exit 1; }

# Host tools the tests use, each checked by the program the tests run (package in brackets):
#   debootstrap            makes the sid chroot                       [debootstrap]
#   go                     validates pprof output (`go tool pprof`)   [golang-go]
#   tmux                   drives the terminal UI                     [tmux]
#   /usr/bin/time          peak RSS of strobe runs (GNU time -f %M)   [time]
#   cc                     builds the C targets (native chains...)   [gcc, libc6-dev]
#   nm readelf objcopy strip objdump   symbols, stripped copies, glibc versions [binutils]
#   script                 a pseudo-terminal for the TUI tests        [bsdutils]
#   pgrep                  finds processes a test started             [procps]
#   runuser chroot useradd other users and the chroot                 [util-linux, coreutils, passwd]
#   python3                host scripts (Debian's python3.11)         [python3]
#   gcore                  core files of live targets (dump --core)    [gdb]
#   prlimit                a core size limit for one target           [util-linux]
#   strace                 proves dump --core stays out of /proc      [strace]
#   node npm               the Firefox Profiler's own loader (gecko)  [nodejs, npm]
HOST_TOOLS=(
  debootstrap:debootstrap go:golang-go tmux:tmux /usr/bin/time:time cc:gcc
  nm:binutils readelf:binutils objcopy:binutils strip:binutils objdump:binutils
  script:bsdutils pgrep:procps
  runuser:util-linux chroot:coreutils useradd:passwd python3:python3
  gcore:gdb prlimit:util-linux strace:strace
  node:nodejs npm:npm
)
HOST_PKGS=()
for entry in "${HOST_TOOLS[@]}"; do
  tool=${entry%%:*} pkg=${entry#*:}
  if ! command -v "$tool" >/dev/null 2>&1; then
    case " ${HOST_PKGS[*]-} " in *" $pkg "*) ;; *) HOST_PKGS+=("$pkg") ;; esac
  fi
done
# cc needs the C library headers to build anything.
[ -f /usr/include/stdio.h ] || HOST_PKGS+=(libc6-dev)
if [ "${#HOST_PKGS[@]}" -gt 0 ]; then
  log "installing host packages: ${HOST_PKGS[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${HOST_PKGS[@]}" >&2
fi

# Rust tools .ci/run uses: cargo-machete (unused dependencies). Installed once per machine.
if ! command -v cargo-machete >/dev/null; then
  log "installing cargo-machete"
  cargo install cargo-machete --locked --version 0.9.2 >&2
fi
for entry in "${HOST_TOOLS[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || { log "MISSING host tool ${entry%%:*} after install"; exit 1; }
done

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  log "sid chroot up to date at $CHROOT"
else
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -x "$CHROOT/usr/bin/apt-get" ]; then
    log "debootstrap sid into $CHROOT"
    rm -rf "$CHROOT"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase sid "$CHROOT" >&2
  fi
  # apt inside the chroot needs /proc and /dev/null only; no mounts are left behind.
  log "installing ${SID_PKGS[*]}"
  chroot "$CHROOT" apt-get -o Acquire::Check-Valid-Until=false update -qq >&2
  chroot "$CHROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${SID_PKGS[@]}" >&2
  echo "$WANT" > "$STAMP"
fi

# numpy for the native-frames test of a BLAS kernel (tests/integration/native_record.rs), in a
# virtual environment of pyenv's 3.12.1, from the Python package registry; pinned, made once.
NUMPY_VENV="$CACHE/venv-numpy-3.12"
NUMPY_VERSION=2.1.3
if ! "$NUMPY_VENV/bin/python" -c "import numpy, sys; sys.exit(numpy.__version__ != '$NUMPY_VERSION')" 2>/dev/null; then
  log "making $NUMPY_VENV with numpy $NUMPY_VERSION"
  rm -rf "$NUMPY_VENV"
  "$PYENV_ROOT/versions/3.12.1/bin/python3.12" -m venv "$NUMPY_VENV"
  "$NUMPY_VENV/bin/pip" install -q --disable-pip-version-check "numpy==$NUMPY_VERSION" >&2
fi

# maturin and zig for packaging/build-wheel.sh (the wheel test), from the Python package
# registry; the script checks the versions and remakes the environment if they differ.
PACKAGING_VENV="$CACHE/packaging-venv"
if ! "$PACKAGING_VENV/bin/maturin" --version 2>/dev/null | grep -qx "maturin 1.9.6"; then
  log "making $PACKAGING_VENV with maturin and ziglang"
  rm -rf "$PACKAGING_VENV"
  "$PYENV_ROOT/versions/3.12.1/bin/python3.12" -m venv "$PACKAGING_VENV"
  "$PACKAGING_VENV/bin/pip" install -q --disable-pip-version-check maturin==1.9.6 ziglang==0.13.0 >&2
fi

# The Firefox Profiler's profile loader for Node (@firefox-devtools/profiler-cli: the profiler's
# own import, upgrade and processing code, bundled), for the gecko test
# (tests/integration/gecko_profiler.rs), from the npm registry; pinned, its tarball checked
# against the registry's published integrity, unpacked once. It asks for Node >= 24 and runs on
# the machine's Node 20; an older node fails here.
PROFILER_CLI_VERSION=0.10.0
PROFILER_CLI_INTEGRITY=sha512-f9fqdHh7B6ddQIYrwrEs4FE5D8BMOsXSorYF4NRFfwPaGikVBlhorBxHT7zrb6WMgJgKQYHC9kazkRjbItLx8Q==
PROFILER_CLI="$CACHE/profiler-cli-$PROFILER_CLI_VERSION"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { log "node $(node --version) is too old for profiler-cli (20 or newer)"; exit 1; }
if [ ! -f "$PROFILER_CLI/package/dist/profiler-cli.js" ]; then
  log "fetching @firefox-devtools/profiler-cli $PROFILER_CLI_VERSION into $PROFILER_CLI"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@firefox-devtools/profiler-cli@$PROFILER_CLI_VERSION" >&2)
  got=$(python3 -c 'import base64, hashlib, sys; print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tmp/firefox-devtools-profiler-cli-$PROFILER_CLI_VERSION.tgz")
  [ "$got" = "$PROFILER_CLI_INTEGRITY" ] || { log "profiler-cli tarball integrity $got, expected $PROFILER_CLI_INTEGRITY"; exit 1; }
  rm -rf "$PROFILER_CLI" && mkdir -p "$PROFILER_CLI"
  tar xzf "$tmp/firefox-devtools-profiler-cli-$PROFILER_CLI_VERSION.tgz" -C "$PROFILER_CLI"
  rm -rf "$tmp"
fi

# tracefs, for the kernel's sched_switch tracepoint that preemption watches open
# (crates/remote/src/perf/trigger.rs; crates/sampler/tests/native_preempted.rs needs it). A fresh
# machine may not have it mounted.
if ! [ -d /sys/kernel/tracing/events ] && ! [ -d /sys/kernel/debug/tracing/events ]; then
  log "mounting tracefs on /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing
fi

for u in strobe-a strobe-b; do
  id "$u" >/dev/null 2>&1 || useradd --no-create-home --shell /usr/sbin/nologin "$u"
done

echo "$CHROOT"
