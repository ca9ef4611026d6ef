#!/usr/bin/env bash
# Build strobe, start demo/app.py, dump its threads' stacks, record it for 3 seconds into a
# flamegraph (strobe-demo.svg), and stop it.
#
#   ./demo.sh                 # uses python3 from PATH
#   PYTHON=python2.7 ./demo.sh
#   ./demo.sh --json          # extra arguments go to `strobe dump`
#
# Reading another process needs privileges: run as root, or see README.md "Permissions".
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

cargo build --release --quiet
STROBE=${CARGO_TARGET_DIR:-target}/release/strobe

# The app's stdin stays open (it exits when it closes); its stdout tells us when it is ready.
coproc APP { exec "$PYTHON" demo/app.py; }
APP_PID_SAVED=$APP_PID
trap 'kill "$APP_PID_SAVED" 2>/dev/null || true' EXIT
if ! read -r -t 30 line <&"${APP[0]}" || [ "$line" != READY ]; then
  echo "demo: $PYTHON demo/app.py did not start" >&2
  exit 1
fi
"$STROBE" dump --pid "$APP_PID_SAVED" "$@"
echo
"$STROBE" record --pid "$APP_PID_SAVED" --duration 3 -o strobe-demo.svg
echo "demo: flamegraph written to $(pwd)/strobe-demo.svg (open it in a browser)"
