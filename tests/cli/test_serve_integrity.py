"""Host integrity at start: a changed runtime file degrades the appliance or, per policy, stops it (exit 78)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import trio

from appliance.gateway.client import open_gateway_client
from appliance.testing.process import start_serve

EXE = shutil.which("appliance", path=str(Path(sys.executable).parent)) or "appliance"


def _baseline(data: Path, runtime: Path) -> None:
    runtime.mkdir(parents=True)
    (runtime / "app.bin").write_bytes(b"original")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    res = subprocess.run(
        [EXE, "defender", "baseline", str(runtime), "--manifest", str(data / "defender" / "baseline.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr


def test_changed_file_degrades_and_status_reports_it(tmp_path: Path) -> None:
    data, runtime = tmp_path / "data", tmp_path / "runtime"
    _baseline(data, runtime)
    (runtime / "app.bin").write_bytes(b"tampered")
    serve = start_serve(data)
    try:

        async def status() -> dict[str, object]:
            async with open_gateway_client(serve.url, serve.token) as client:
                payload: dict[str, object] = await client.call("status")
                return payload

        doc = trio.run(status)
        integrity = doc["integrity"]
        assert isinstance(integrity, dict)
        assert integrity["degraded"] is True
        assert "app.bin" in json.dumps(integrity)
        assert "integrity_mismatch" in serve.log_text()
    finally:
        serve.terminate()


def test_refuse_policy_stops_start_with_exit_78(tmp_path: Path) -> None:
    data, runtime = tmp_path / "data", tmp_path / "runtime"
    _baseline(data, runtime)
    (runtime / "app.bin").unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env |= {"APPLIANCE_DEFENDER_INTEGRITY_POLICY": "refuse", "APPLIANCE_GATEWAY_TOKEN": "t"}
    res = subprocess.run(
        [EXE, "serve", "--port", "0", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert res.returncode == 78, res.stderr
    assert "integrity check failed" in res.stderr
    assert "Traceback" not in res.stderr
