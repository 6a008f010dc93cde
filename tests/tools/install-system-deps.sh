#!/usr/bin/env bash
# System packages the test suite needs, installed only when missing (Debian 12, as root).
# Idempotent and quiet when everything is present; CI runs it from a fresh clone on a fresh machine.
set -euo pipefail

need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v strip >/dev/null 2>&1 || need+=(binutils)  # PyInstaller strips the frozen runner
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v minisign >/dev/null 2>&1 || need+=(minisign)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${need[*]} and not root; install them with apt-get" >&2
  exit 69
fi
echo "install-system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
