#!/bin/sh
# Install the systemd integration into a root filesystem (default /; ROOT=/path for an image being built):
# units, sysusers, tmpfiles, the first-boot script. Does not install the bundle itself: the OTA step
# unpacks a verified artifact into /opt/appliance/releases/<version>/ and points /opt/appliance/current at it.
#
#   ROOT=/mnt/rootfs image/systemd/install-units.sh        then on the device: systemctl enable appliance
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="${ROOT:-/}"
install -D -m 0644 "$HERE/appliance.service" "$ROOT/usr/lib/systemd/system/appliance.service"
install -D -m 0644 "$HERE/appliance-firstboot.service" "$ROOT/usr/lib/systemd/system/appliance-firstboot.service"
install -D -m 0644 "$HERE/appliance.sysusers.conf" "$ROOT/usr/lib/sysusers.d/appliance.conf"
install -D -m 0644 "$HERE/appliance.tmpfiles.conf" "$ROOT/usr/lib/tmpfiles.d/appliance.conf"
install -D -m 0755 "$HERE/appliance-firstboot.sh" "$ROOT/usr/libexec/appliance/appliance-firstboot.sh"
if [ "$ROOT" = / ]; then
  systemd-sysusers appliance.conf
  systemd-tmpfiles --create appliance.conf
  systemctl daemon-reload
  echo "installed; enable with: systemctl enable --now appliance.service"
else
  systemd-sysusers --root="$ROOT" "$ROOT/usr/lib/sysusers.d/appliance.conf"
  systemd-tmpfiles --root="$ROOT" --create "$ROOT/usr/lib/tmpfiles.d/appliance.conf"
  mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
  ln -sf /usr/lib/systemd/system/appliance.service "$ROOT/etc/systemd/system/multi-user.target.wants/appliance.service"
fi
