#!/bin/sh
# First-boot step (appliance-firstboot.service): idempotent, safe to re-run by hand.
set -eu
APP=/opt/appliance/current/appliance
DATA=/var/lib/appliance
CONF=/etc/appliance/config.toml

install -d -m 0700 -o appliance -g appliance "$DATA"
install -d -m 0750 -o root -g appliance /etc/appliance
if [ ! -e "$CONF" ]; then
  # the operator's overrides; everything else comes from the profile embedded in the binary
  umask 027
  cat >"$CONF" <<'TOML'
# Operator overrides, layered over the embedded profile (see `appliance doctor` and profiles/embedded.toml).
# [gateway]
# bind = "lan"
# port = 18789
TOML
  chown root:appliance "$CONF"
fi
# the check runs as the service user, as the service will
if command -v setpriv >/dev/null 2>&1; then
  setpriv --reuid=appliance --regid=appliance --init-groups \
    env HOME="$DATA" APPLIANCE_DATA_DIR="$DATA" "$APP" doctor --json --config "$CONF" >"$DATA/firstboot-doctor.json" || true
fi
touch "$DATA/.firstboot-done"
chown appliance:appliance "$DATA/.firstboot-done" "$DATA/firstboot-doctor.json" 2>/dev/null || true
