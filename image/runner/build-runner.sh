#!/usr/bin/env bash
# Freeze the sandbox runner (appliance/sandbox/runner.py) into OUT_DIR/appliance-runner/ (one folder).
#
#   image/runner/build-runner.sh OUT_DIR
#
# Reproducible: fixed SOURCE_DATE_EPOCH (the runner's identity is its content, not the commit time),
# PYTHONHASHSEED=0, the clean hash-checked build venv of image/build-venv.sh. Callers cache OUT_DIR by a
# hash of the inputs (appliance/sandbox/image.py: runner_bundle_key).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:?usage: build-runner.sh OUT_DIR}"
export SOURCE_DATE_EPOCH=1700000000 PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
unset PYTHONPATH PYTHONSTARTUP PYTHONUSERBASE PIP_USER
export PIP_DISABLE_PIP_VERSION_CHECK=1
BUILD_VENV="$("$ROOT/image/build-venv.sh")"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/runner-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && "$BUILD_VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath "$WORK/dist" --workpath "$WORK/build" "$ROOT/image/runner/runner.spec")
# normalise what the archive format does not: modes and mtimes of the tree
find "$WORK/dist" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
chmod -R u=rwX,go=rX "$WORK/dist"
mkdir -p "$OUT"
rm -rf "$OUT/appliance-runner"
mv "$WORK/dist/appliance-runner" "$OUT/appliance-runner"
