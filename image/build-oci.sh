#!/usr/bin/env bash
# Build the OCI image FROM scratch from the frozen bundle, reproducibly, and save it as an OCI archive.
#
#   image/build-oci.sh [DIST_DIR]          default dist; needs DIST/appliance/ (image/build-bundle.sh)
#   CHECK_TWICE=1 image/build-oci.sh       build a second time from a fresh context and require the same ID
#
# -> localhost/appliance:<version> and DIST/appliance-<version>-<arch>.oci.tar; prints image ID + digest.
# Rootfs: /opt/appliance (the bundle), the shared libraries ldd lists for the launcher and every bundled
# .so (glibc set), /etc/passwd+group with user appliance (10001), /tmp 1777, /var/lib/appliance (10001).
# Modes are normalised (0755/0644) and the build uses --timestamp 0, so only content decides the ID.
# podman gets our containers.conf (runc, cgroupfs, lowered ulimits) from appliance.sandbox.podman.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST="${1:-dist}"
case "$DIST" in /*) ;; *) DIST="$ROOT/$DIST" ;; esac
BUNDLE="$DIST/appliance"
[[ -x "$BUNDLE/appliance" ]] || { echo "no bundle at $BUNDLE: run image/build-bundle.sh first" >&2; exit 66; }
PY="${BUILD_VENV:-$ROOT/build/venv}/bin/python"
[[ -x "$PY" ]] || PY="$ROOT/.venv/bin/python"

RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}/appliance-oci-$$"
CONTAINERS_CONF="$(cd "$ROOT" && PYTHONPATH="$ROOT" "$PY" -c \
  'import sys; from appliance.sandbox.podman import write_containers_conf; print(write_containers_conf(sys.argv[1]))' \
  "$RUNTIME_DIR")"
export CONTAINERS_CONF
trap 'rm -rf "$RUNTIME_DIR"' EXIT

info="$("$BUNDLE/appliance" version --json)"
VERSION="$(printf '%s' "$info" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["version"])')"
ARCH="$(printf '%s' "$info" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["arch"])')"
TAG="localhost/appliance:$VERSION"

assemble() {  # $1 = context dir
  local ctx="$1" root="$1/rootfs"
  rm -rf "$ctx"; mkdir -p "$root/opt" "$root/etc" "$ctx/datadir/appliance"
  cp -a "$BUNDLE" "$root/opt/appliance"
  # the system libraries the launcher needs (it loads before the bundle's library path is set: ld-linux,
  # libc, libz, ...) plus those the bundled ELF objects need and the bundle does not carry itself
  { ldd "$BUNDLE/appliance" | sed 's/^/L /'
    find "$BUNDLE/_internal" -name '*.so*' -type f -exec ldd {} \; 2>/dev/null | sed 's/^/B /'; } |
    awk '/=> \//{print $1, $4} /^. \t\/.*ld-linux/{print $1, $2}' | sort -u | while read -r who lib; do
      case "$lib" in "$BUNDLE"/*) continue ;; esac
      # a bundled copy wins for the Python extensions (the bootloader puts _internal first)
      [[ "$who" == B && -e "$BUNDLE/_internal/$(basename "$lib")" ]] && continue
      cp -L --parents -n "$lib" "$root/"
    done
  install -m 0644 "$ROOT/image/oci/passwd" "$root/etc/passwd"
  install -m 0644 "$ROOT/image/oci/group" "$root/etc/group"
  install -d -m 1777 "$root/tmp"
  install -m 0644 "$ROOT/image/oci/Containerfile" "$ctx/Containerfile"
  # normalise: directories 0755 (except /tmp), executables 0755, everything else 0644
  find "$root" "$ctx/datadir" -type d ! -path "$root/tmp" -exec chmod 0755 {} +
  find "$root" -type f -perm /111 -exec chmod 0755 {} +
  find "$root" -type f ! -perm /111 -exec chmod 0644 {} +
  chmod 1777 "$root/tmp"
  chmod 0700 "$ctx/datadir/appliance"   # the data dir: owner only (doctor checks it)
}

build() {  # $1 = context dir -> prints image ID
  podman build -q --no-cache --timestamp 0 --network none -t "$TAG" "$1"
}

CTX="$ROOT/build/oci/ctx"
start=$(date +%s.%N)
assemble "$CTX"
ID1="$(build "$CTX")"
echo "image $TAG id $ID1 ($(awk "BEGIN{printf \"%.1f\", $(date +%s.%N)-$start}") s)"
if [[ "${CHECK_TWICE:-0}" == 1 ]]; then
  assemble "$ROOT/build/oci/ctx2"
  ID2="$(build "$ROOT/build/oci/ctx2")"
  if [[ "$ID1" != "$ID2" ]]; then echo "NOT reproducible: $ID1 != $ID2" >&2; exit 1; fi
  echo "second build from a fresh context: same image ID $ID2"
fi
OUT="$DIST/appliance-$VERSION-$ARCH.oci.tar"
rm -f "$OUT"
podman save -q --format oci-archive -o "$OUT" "$TAG"
MANIFEST_DIGEST="$(tar -xOf "$OUT" index.json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])')"
echo "oci archive $OUT ($(stat -c %s "$OUT") bytes), OCI manifest digest $MANIFEST_DIGEST"
