#!/usr/bin/env bash
# Create (or reuse) the clean build venv: requirements.lock + image/requirements-build.txt, hash-checked,
# wheels only, nothing else. Prints its path. Recreated whenever either lock file changes.
#
#   PYTHON      interpreter (default python3.11): part of the artifact's identity (libpython is bundled)
#   BUILD_VENV  location (default build/venv)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
BUILD_VENV="${BUILD_VENV:-$ROOT/build/venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_USER PYTHONPATH
stamp="$(cat "$ROOT/requirements.lock" "$ROOT/image/requirements-build.txt" | sha256sum | cut -c1-16)"
if [[ ! -f "$BUILD_VENV/.stamp-$stamp" ]]; then
  rm -rf "$BUILD_VENV"
  "$PYTHON" -m venv "$BUILD_VENV"
  "$BUILD_VENV/bin/pip" install -qq --require-hashes --only-binary=:all: -r "$ROOT/requirements.lock" >&2
  "$BUILD_VENV/bin/pip" install -qq --require-hashes --only-binary=:all: --no-deps \
    -r "$ROOT/image/requirements-build.txt" >&2
  touch "$BUILD_VENV/.stamp-$stamp"
fi
echo "$BUILD_VENV"
