#!/usr/bin/env bash
# Build the release twice from clean and compare the sha256 of every file: each bundle file, the archive,
# the manifest and the signature (Ed25519 is deterministic: same key, same signature). Exit 0 only when
# everything is byte-identical.
#
#   image/verify-reproducible.sh
#
# The source is snapshotted once (REPRO_SOURCE=worktree: the working tree incl. uncommitted files, default;
# REPRO_SOURCE=git: `git archive HEAD`), then copied to two different directories, so the check also covers
# build-path invariance and cannot be fooled by someone editing the tree between the builds.
# FRESH_VENV=1 recreates the build venv before each build (slower; proves the venv is rebuilt identically).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRATCH="${REPRO_DIR:-$ROOT/build/repro}"
BUILD_VENV="${BUILD_VENV:-$ROOT/build/venv}"
export BUILD_VENV
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 1700000000)"
fi
export SOURCE_DATE_EPOCH
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH/snap"

if [[ "${REPRO_SOURCE:-worktree}" == git ]]; then
  git -C "$ROOT" archive HEAD | tar -x -C "$SCRATCH/snap"
else
  tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
    --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache \
    --exclude='*.egg-info' -cf - . | tar -x -C "$SCRATCH/snap"
fi

"$ROOT/image/build-venv.sh" >/dev/null
if [[ -z "${APPLIANCE_SIGNING_KEY:-}" ]]; then   # one throwaway key for both builds
  head -c 24 /dev/urandom | base64 >"$SCRATCH/passphrase"
  PYTHONPATH="$SCRATCH/snap" PYTHONDONTWRITEBYTECODE=1 "$BUILD_VENV/bin/python" -m appliance.artifact.cli \
    artifact keygen --kdf interactive --secret-key "$SCRATCH/key" --public-key "$SCRATCH/key.pub" \
    --passphrase-file "$SCRATCH/passphrase" >/dev/null
fi

for n in 1 2; do
  [[ "${FRESH_VENV:-0}" == 1 ]] && rm -rf "$BUILD_VENV" && "$ROOT/image/build-venv.sh" >/dev/null
  cp -a "$SCRATCH/snap" "$SCRATCH/src$n"
  start=$(date +%s)
  APPLIANCE_SIGNING_KEY="${APPLIANCE_SIGNING_KEY:-$SCRATCH/key}" \
  APPLIANCE_SIGNING_PASSPHRASE_FILE="${APPLIANCE_SIGNING_PASSPHRASE_FILE:-$SCRATCH/passphrase}" \
  APPLIANCE_VERIFY_PUBKEY="${APPLIANCE_VERIFY_PUBKEY:-$SCRATCH/key.pub}" \
  BUILD_WORK="$SCRATCH/work$n" "$SCRATCH/src$n/image/build-dist.sh" "$SCRATCH/dist$n" \
    >"$SCRATCH/build$n.log" 2>&1 || { tail -30 "$SCRATCH/build$n.log"; exit 1; }
  echo "build $n: $(( $(date +%s) - start )) s  (source $SCRATCH/src$n)"
  (cd "$SCRATCH/dist$n" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$SCRATCH/sums$n.txt"
done

if diff -u "$SCRATCH/sums1.txt" "$SCRATCH/sums2.txt" >"$SCRATCH/sums.diff"; then
  echo "reproducible: $(wc -l <"$SCRATCH/sums1.txt") files identical (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
  grep -E '\.tar\.zst$|\.manifest\.json(\.minisig)?$|/appliance/appliance$' "$SCRATCH/sums1.txt"
  echo "bundle tree sha256: $(grep ' \./appliance/' "$SCRATCH/sums1.txt" | sha256sum | cut -c1-64)"
else
  echo "NOT reproducible; differing files:" >&2
  grep '^[-+][0-9a-f]' "$SCRATCH/sums.diff" >&2 || cat "$SCRATCH/sums.diff" >&2
  exit 1
fi
