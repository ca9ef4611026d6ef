#!/usr/bin/env bash
# Build strobe's wheel into OUTDIR: the release binary, linked against glibc 2.17 through zig so
# that it runs on every x86-64 Linux py-spy's wheels run on, tagged manylinux2014.
#
#   packaging/build-wheel.sh OUTDIR
#
# maturin and zig come from the Python package registry, in $STROBE_CACHE/packaging-venv
# (made by .ci/provision.sh; made here too if missing, with $PYTHON or python3). The build has its own target
# directory (target/wheel), so it does not disturb debug builds and is incremental.
set -euo pipefail
out=${1:?usage: packaging/build-wheel.sh OUTDIR}
cd "$(dirname "$0")/.."
CACHE=${STROBE_CACHE:-/var/cache/strobe}
VENV="$CACHE/packaging-venv"
MATURIN_VERSION=1.9.6
ZIG_VERSION=0.13.0
if ! "$VENV/bin/maturin" --version 2>/dev/null | grep -qx "maturin $MATURIN_VERSION" \
    || ! "$VENV/bin/python" -m ziglang version 2>/dev/null | grep -qx "$ZIG_VERSION"; then
  rm -rf "$VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "maturin==$MATURIN_VERSION" "ziglang==$ZIG_VERSION" >&2
fi
mkdir -p "$out"
# maturin finds zig through the ziglang package of the Python that runs it.
PATH="$VENV/bin:$PATH" CARGO_TARGET_DIR="$PWD/target/wheel" \
  maturin build --release --zig --compatibility manylinux2014 \
    --target x86_64-unknown-linux-gnu --out "$out" >&2
ls "$out"/strobe_profiler-*.whl
