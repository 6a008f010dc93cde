"""The systemd integration files: the directives the device relies on, and systemd's own checker."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "image" / "systemd"


def directives(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_gateway_unit_has_watchdog_limits_and_hardening() -> None:
    d = directives(SYSTEMD / "appliance.service")
    assert d["Type"] == ["notify"]
    assert d["Restart"] == ["on-failure"]
    assert d["WatchdogSec"] == ["30s"]
    assert d["MemoryMax"] == ["512M"]
    assert d["CPUQuota"] == ["150%"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["User"] == ["appliance"]
    assert d["StateDirectoryMode"] == ["0700"]
    assert d["ExecStart"][0].startswith("/opt/appliance/current/appliance serve")


def test_sysusers_and_tmpfiles_agree_on_the_user() -> None:
    assert "u appliance " in (SYSTEMD / "appliance.sysusers.conf").read_text()
    tmpfiles = (SYSTEMD / "appliance.tmpfiles.conf").read_text()
    assert "d     /var/lib/appliance             0700 appliance appliance" in tmpfiles


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify() -> None:
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "appliance.service", "appliance-firstboot.service"],
        cwd=SYSTEMD,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # the binaries are not installed on the build box; every other complaint is a real error
    problems = [
        line
        for line in (out.stdout + out.stderr).splitlines()
        if line.strip() and "is not executable: No such file or directory" not in line
    ]
    assert problems == []
