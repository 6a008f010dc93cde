#!/usr/bin/env bash
# One command from a clean clone to a signed release in dist/:
#
#   image/build-dist.sh [OUT_DIR]      (default dist)
#
# -> OUT/appliance/ (the onedir bundle), OUT/appliance-<ver>-<arch>.tar.zst, .manifest.json, .manifest.json.minisig
#
# Signing key: $APPLIANCE_SIGNING_KEY (a minisign secret key; passphrase from $APPLIANCE_SIGNING_PASSPHRASE_FILE
# or $APPLIANCE_SIGNING_PASSPHRASE). Without it a throwaway dev key is generated under build/dev-key/ so the
# pipeline still runs end to end; such a release only verifies with --pubkey build/dev-key/dev.pub.
# APPLIANCE_VERIFY_PUBKEY: the public key to check the result with (default: the embedded keys).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-dist}"
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
BUILD_VENV="${BUILD_VENV:-$ROOT/build/venv}"
export BUILD_VENV
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 1700000000)"
fi
export SOURCE_DATE_EPOCH PYTHONHASHSEED=0

"$ROOT/image/build-bundle.sh" "$OUT"

art() { (cd "$ROOT" && PYTHONPATH="$ROOT" PYTHONDONTWRITEBYTECODE=1 "$BUILD_VENV/bin/python" -m appliance.artifact.cli artifact "$@"); }

KEY="${APPLIANCE_SIGNING_KEY:-}"
PASSFILE="${APPLIANCE_SIGNING_PASSPHRASE_FILE:-}"
VERIFY_KEY=()
[[ -n "${APPLIANCE_VERIFY_PUBKEY:-}" ]] && VERIFY_KEY=(--pubkey "$APPLIANCE_VERIFY_PUBKEY")
if [[ -z "$KEY" ]]; then
  DEV="$ROOT/build/dev-key"
  if [[ ! -f "$DEV/dev.key" ]]; then
    mkdir -p "$DEV" && chmod 700 "$DEV"
    head -c 24 /dev/urandom | base64 > "$DEV/passphrase" && chmod 600 "$DEV/passphrase"
    art keygen --kdf interactive --secret-key "$DEV/dev.key" --public-key "$DEV/dev.pub" \
      --passphrase-file "$DEV/passphrase" >/dev/null
  fi
  KEY="$DEV/dev.key"; PASSFILE="$DEV/passphrase"; VERIFY_KEY=(--pubkey "$DEV/dev.pub")
  echo "build-dist: no APPLIANCE_SIGNING_KEY, signed with throwaway dev key $DEV/dev.pub" >&2
fi
PASSARG=()
[[ -n "$PASSFILE" ]] && PASSARG=(--passphrase-file "$PASSFILE")

art build --bundle "$OUT/appliance" --out "$OUT" --secret-key "$KEY" "${PASSARG[@]}" \
  --min-version "${APPLIANCE_MIN_VERSION:-0}" --valid-days "${APPLIANCE_VALID_DAYS:-180}"
# verify what we just wrote, at the build's own time (SOURCE_DATE_EPOCH) so old commits still verify
art verify "${VERIFY_KEY[@]}" --now "$SOURCE_DATE_EPOCH" "$OUT"/appliance-*.manifest.json
