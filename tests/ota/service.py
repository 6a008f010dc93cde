"""A stand-in for systemd in the OTA tests: ``python service.py restart|stop CONFIG.json``.

``restart`` stops the running ``appliance serve`` (pidfile), runs ``boot-check`` (ExecStartPre), then
starts ``<root>/current/appliance serve`` detached and waits for ``/ready`` (as ``Type=notify`` would).
It records which version it started in ``started.jsonl``. ``stop`` only stops. Never inherits the
``OTA_TEST_*`` fault-injection switch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop(cfg: dict[str, str]) -> None:
    pidfile = Path(cfg["state_dir"]) / "serve.pid"
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def restart(cfg: dict[str, str]) -> int:
    stop(cfg)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update({"APPLIANCE_GATEWAY_TOKEN": "test-token-0123456789", "APPLIANCE_LOG_FORMAT": "json"})
    state_dir = Path(cfg["state_dir"])
    common = ["--root", cfg["root"], "--data-dir", cfg["data_dir"]]
    boot = subprocess.run(
        [sys.executable, "-m", "appliance.ota", "boot-check", *common, "--public-key", cfg["public_key"]],
        env=env,
        capture_output=True,
        check=False,
    )
    with (state_dir / "boot-check.log").open("ab") as log:
        log.write(boot.stdout + boot.stderr)
    version = os.path.basename(os.readlink(Path(cfg["root"]) / "current"))
    with (state_dir / "serve.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                str(Path(cfg["root"]) / "current" / "appliance"),
                "serve",
                "--port",
                cfg["port"],
                "--data-dir",
                cfg["data_dir"],
            ],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    (state_dir / "serve.pid").write_text(str(proc.pid))
    with (state_dir / "started.jsonl").open("a") as f:
        f.write(json.dumps({"version": version, "pid": proc.pid}) + "\n")
    from appliance.testing.process import wait_http_ok

    try:
        wait_http_ok(int(cfg["port"]), timeout_s=20)
    except TimeoutError:
        return 0  # a broken version: the trial check decides, as with systemd
    return 0


if __name__ == "__main__":
    config = json.loads(Path(sys.argv[2]).read_text())
    if sys.argv[1] == "stop":
        stop(config)
        raise SystemExit(0)
    raise SystemExit(restart(config))
