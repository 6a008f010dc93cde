#!/usr/bin/env bash
# Build the frozen one-folder bundle reproducibly: dist/appliance/ (+ build/ scratch).
#
#   image/build-bundle.sh [OUT_DIR]          default OUT_DIR: dist
#
# Environment:
#   PYTHON             interpreter for the clean build venv (default: python3.11). The interpreter build is
#                      part of the artifact's identity: libpython and lib-dynload are copied from it.
#   BUILD_VENV         where the clean venv lives (default: build/venv); recreated if the locks changed
#   SOURCE_DATE_EPOCH  default: committer time of HEAD (or 1700000000 outside git)
#
# The venv holds only requirements.lock + image/requirements-build.txt, installed with --require-hashes
# and --only-binary: an extra package in the build venv changes the bundle.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-dist}"
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
PYTHON="${PYTHON:-python3.11}"
BUILD_VENV="${BUILD_VENV:-$ROOT/build/venv}"
WORK="${BUILD_WORK:-$ROOT/build/pyinstaller}"

if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 1700000000)"
fi
export SOURCE_DATE_EPOCH PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
# keep the user's environment out of the build
unset PYTHONPATH PYTHONSTARTUP PYTHONUSERBASE PIP_USER
export PIP_DISABLE_PIP_VERSION_CHECK=1

BUILD_VENV="$(BUILD_VENV="$BUILD_VENV" PYTHON="$PYTHON" "$ROOT/image/build-venv.sh")"

rm -rf "$WORK" "$OUT/appliance"
mkdir -p "$OUT"
# the source tree is put on the path by the spec (pathex); the app itself is not pip-installed
(cd "$ROOT" && "$BUILD_VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath "$OUT" --workpath "$WORK" image/appliance.spec)

# the frozen sandbox runner ships inside the bundle: a device builds its runner image from it, offline
# (appliance/sandbox/image.py looks in _internal/runner-bundle when frozen)
"$ROOT/image/runner/build-runner.sh" "$OUT/appliance/_internal/runner-bundle"

"$OUT/appliance/appliance" version
