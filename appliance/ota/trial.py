"""The trial's health check and the service commands (I/O shell around :mod:`appliance.ota.state`).

A trial version is healthy when (1) the gateway answers ``health_url`` (``/ready``) with 200 and then
(2) ``appliance doctor`` of the *current* slot exits 0. Not answering yet is "unknown" (``None``: wait
until the deadline); a doctor failure is a definite "no" (``False``: revert now). Channel checks are part
of ``doctor`` where channels are configured.

Service commands (restart, stop) are argv lists run without a shell; on systemd they are
``systemctl restart appliance`` / ``systemctl stop appliance``; tests pass their own.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import attrs

from appliance.log import get_logger
from appliance.ota.errors import SelfCheckFailed

__all__ = ["HealthProbe", "default_service_commands", "run_self_check", "run_service_command"]

log = get_logger("appliance.ota")
SYSTEMD_UNIT = "appliance"


def default_service_commands() -> tuple[list[str] | None, list[str] | None]:
    """(restart, stop) for this host: systemd when it runs, else none (the operator restarts)."""
    if os.path.isdir("/run/systemd/system"):
        return ["systemctl", "restart", SYSTEMD_UNIT], ["systemctl", "stop", SYSTEMD_UNIT]
    return None, None


def _clean_env() -> dict[str, str]:
    """Children never inherit the fault-injection switch."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTA_TEST_")}


def run_service_command(argv: Sequence[str] | None, what: str, timeout_s: float = 120.0) -> bool:
    """Run a restart/stop command; False (logged) when it fails: the trial check then decides."""
    if not argv:
        return False
    try:
        done = subprocess.run(
            list(argv), env=_clean_env(), timeout=timeout_s, capture_output=True, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("ota_service_command_failed", what=what, error=str(exc))
        return False
    if done.returncode != 0:
        log.warning(
            "ota_service_command_failed",
            what=what,
            exit_code=done.returncode,
            stderr=done.stderr.decode(errors="replace")[-400:],
        )
        return False
    return True


def run_self_check(entry_point: Path, timeout_s: float = 60.0) -> dict[str, object]:
    """``<slot>/appliance version --json`` must run and print JSON: the binary starts on this board.

    It must not touch the database (migrations run only after the snapshot). Raises SelfCheckFailed.
    """
    try:
        done = subprocess.run(
            [str(entry_point), "version", "--json"],
            env=_clean_env(),
            timeout=timeout_s,
            capture_output=True,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SelfCheckFailed(f"self-check of {entry_point} did not run: {exc}") from exc
    if done.returncode != 0:
        raise SelfCheckFailed(
            f"self-check of {entry_point} failed with exit {done.returncode}",
            details={"stderr": done.stderr.decode(errors="replace")[-400:]},
        )
    try:
        out = json.loads(done.stdout.decode() or "{}")
    except ValueError as exc:
        raise SelfCheckFailed(f"self-check of {entry_point} printed no JSON") from exc
    return out if isinstance(out, dict) else {}


@attrs.frozen
class HealthProbe:
    health_url: str
    data_dir: Path
    timeout_s: float = 3.0

    def _http_ok(self) -> bool:
        url = urllib.parse.urlsplit(self.health_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=self.timeout_s)
        try:
            conn.request("GET", url.path or "/")
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            return False
        else:
            return resp.status == 200
        finally:
            conn.close()

    def check(self, entry_point: Path) -> bool | None:
        """True healthy, False definitely not (doctor failed), None not answering yet."""
        if not self._http_ok():
            return None
        try:
            done = subprocess.run(
                [str(entry_point), "doctor", "--json", "--data-dir", str(self.data_dir)],
                env=_clean_env(),
                timeout=120,
                capture_output=True,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("ota_doctor_failed", error=str(exc))
            return False
        if done.returncode != 0:
            log.warning("ota_doctor_failed", exit_code=done.returncode, out=done.stdout.decode()[-400:])
            return False
        return True
