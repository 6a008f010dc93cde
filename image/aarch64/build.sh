#!/usr/bin/env bash
# Build the aarch64 frozen bundle (and its signed artifact) in an arm64 Debian root filesystem under
# qemu-user (binfmt), then smoke-run `appliance version` and `doctor --json` there. Slow (minutes, ~10-25x
# slower than native); not for CI, and no performance figures: measure on the real board.
#
#   sudo image/aarch64/build.sh [OUT_DIR]          default dist/aarch64; needs root (debootstrap, chroot)
#
# One-time host set-up (Debian 12; also done by this script when missing):
#   apt-get install -y debootstrap qemu-user-static binfmt-support
#   mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc   # if not mounted
#   update-binfmts --enable qemu-aarch64
#
# Steps: (1) arm64 bookworm rootfs with python3.11 + binutils (PyInstaller needs objdump) via debootstrap;
# (2) wheels for aarch64 downloaded on the host with --require-hashes from requirements.lock and
# image/requirements-build.txt (pip inside the emulated chroot is slow and this box's index access is
# host-only); (3) a snapshot of the source tree copied into the rootfs; (4) image/build-bundle.sh run in the
# chroot with PIP_NO_INDEX + PIP_FIND_LINKS (the same script and spec as x86_64); (5) smoke tests in the
# chroot; (6) the artifact built and signed on the host (signing is architecture-independent).
# Note: the interpreter is Debian's python3.11 (3.11.2), not the x86_64 build's: the interpreter is part of
# the artifact's identity, so pin the rootfs (snapshot.debian.org at a fixed date) for reproducible builds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-dist/aarch64}"
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
WORK="${AARCH64_WORK:-$ROOT/build/aarch64}"
RFS="$WORK/rootfs"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${DEBIAN_SUITE:-bookworm}"
HOST_PY="${HOST_PYTHON:-$ROOT/.venv/bin/python}"
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 1700000000)"
fi
export SOURCE_DATE_EPOCH
t0=$(date +%s)
stamp() { echo "[aarch64 +$(( $(date +%s) - t0 ))s] $*"; }

# 0. binfmt
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  command -v qemu-aarch64-static >/dev/null || apt-get install -y qemu-user-static binfmt-support debootstrap
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64
fi
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || echo "warning: qemu-aarch64 binfmt lacks the F flag" >&2

# 1. rootfs
if [[ ! -x "$RFS/usr/bin/python3.11" ]]; then
  stamp "debootstrap $SUITE arm64 (stage 1 + 2 under qemu: several minutes)"
  rm -rf "$RFS"; mkdir -p "$RFS"
  debootstrap --arch=arm64 --variant=minbase --foreign \
    --include=python3,python3-venv,libpython3.11,binutils,ca-certificates "$SUITE" "$RFS" "$MIRROR"
  chroot "$RFS" /debootstrap/debootstrap --second-stage
fi
stamp "rootfs ready: $(chroot "$RFS" python3 -c 'import platform; print(platform.machine(), platform.python_version())')"

# 2. wheels for the target, hash-checked
WHEELS="$WORK/wheels"
mkdir -p "$WHEELS"
PLAT=(--platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64
      --platform linux_aarch64 --python-version 3.11 --implementation cp --only-binary=:all:)
"$HOST_PY" -m pip download -q --disable-pip-version-check -d "$WHEELS" "${PLAT[@]}" --require-hashes -r "$ROOT/requirements.lock"
"$HOST_PY" -m pip download -q --disable-pip-version-check -d "$WHEELS" "${PLAT[@]}" --no-deps --require-hashes \
  -r "$ROOT/image/requirements-build.txt"
stamp "wheels: $(ls "$WHEELS" | wc -l)"

# 3. source snapshot (the same exclusions as verify-reproducible.sh)
rm -rf "$RFS/src" && mkdir -p "$RFS/src" "$RFS/wheels"
tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist --exclude=__pycache__ \
  --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache --exclude='*.egg-info' -cf - . |
  tar -x -C "$RFS/src"
cp -a "$WHEELS/." "$RFS/wheels/"

# 4. build in the chroot (same script, same spec)
mountpoint -q "$RFS/proc" || mount -t proc proc "$RFS/proc"
trap 'umount "$RFS/proc" 2>/dev/null || true' EXIT
stamp "build-bundle.sh in the arm64 chroot"
b0=$(date +%s)
chroot "$RFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" PYTHON=python3.11 BUILD_VENV=/build/venv BUILD_WORK=/build/pyinstaller \
  PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels \
  /src/image/build-bundle.sh /build/dist
stamp "bundle built in $(( $(date +%s) - b0 )) s"

# 5. smoke tests under emulation
chroot "$RFS" /build/dist/appliance/appliance version --json
chroot "$RFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp APPLIANCE_DATA_DIR=/tmp/appliance-smoke \
  /build/dist/appliance/appliance doctor --json --data-dir /tmp/appliance-smoke
for i in 1 2 3; do
  s=$(date +%s.%N); chroot "$RFS" /build/dist/appliance/appliance version >/dev/null
  echo "version under qemu: $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N)-$s}") s"
done

# 6. artifact (on the host)
mkdir -p "$OUT"
rm -rf "$OUT/appliance" && cp -a "$RFS/build/dist/appliance" "$OUT/appliance"
if [[ -n "${APPLIANCE_SIGNING_KEY:-}" ]]; then
  PYTHONPATH="$ROOT" "$HOST_PY" -m appliance.artifact.cli artifact build --bundle "$OUT/appliance" --out "$OUT" \
    --arch aarch64 --secret-key "$APPLIANCE_SIGNING_KEY" \
    ${APPLIANCE_SIGNING_PASSPHRASE_FILE:+--passphrase-file "$APPLIANCE_SIGNING_PASSPHRASE_FILE"}
fi
stamp "done: $OUT ($(du -sh "$OUT/appliance" | cut -f1) bundle)"
