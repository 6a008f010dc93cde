"""The frozen one-folder bundle: build it once (clean venv, hash-locked) and run what a device runs.

Slow: the first run creates build/venv from the lock files (needs the package index) and PyInstaller takes
about a minute. Set ``APPLIANCE_FROZEN_BUNDLE=dist/appliance`` to test an existing bundle instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import IO

import pytest
import trio

from appliance.gateway.client import open_gateway_client
from appliance.testing.process import free_port, wait_http_ok

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("python3.11") is None, reason="needs python3.11 to build the bundle"),
]
TOKEN = "frozen-test-token-0123456789"


def run(exe: Path, *args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_DATA_DIR"] = str(data)
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_frozen_version(frozen: Path, tmp_path: Path) -> None:
    out = run(frozen, "version", "--json", data=tmp_path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["frozen"] == "yes"
    assert info["name"] == "appliance"


def test_frozen_doctor_json(frozen: Path, tmp_path: Path) -> None:
    out = run(frozen, "doctor", "--json", "--data-dir", str(tmp_path / "data"), data=tmp_path / "data")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert "profiles/embedded.toml" in checks["config"]["detail"]  # the profile is inside the bundle
    assert checks["database"]["status"] == "ok"


def test_frozen_component_commands_are_bundled(frozen: Path, tmp_path: Path) -> None:
    """Lazily imported subcommands must exist in the frozen build (collect_submodules in the spec)."""
    out = run(frozen, "--help", data=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sandbox" in out.stdout


def start_frozen_serve(exe: Path, port: int, data: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_GATEWAY_TOKEN"] = TOKEN
    return subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--data-dir", str(data)], env=env, stdout=log, stderr=log
    )


async def test_frozen_serve_answers_health(frozen: Path, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    log = (tmp_path / "serve.log").open("wb")
    proc = start_frozen_serve(frozen, port, data, log)
    try:
        with trio.fail_after(60):
            health = await trio.to_thread.run_sync(lambda: wait_http_ok(port, "/health", 30.0))
            assert health.get("ok") is True
            async with open_gateway_client(f"ws://127.0.0.1:{port}", TOKEN) as client:
                result = await client.call("health")
            assert result.get("ok") is True
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]


@pytest.mark.podman
@pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (apt-get install -y podman runc)")
def test_frozen_builds_its_runner_image_offline_and_runs_a_command(frozen: Path, tmp_path: Path) -> None:
    """A device has no source tree: the release carries the frozen runner and the image context, and
    host tools started by the frozen binary (ldd, podman, conmon) see the host's libraries, not ours."""
    assert (frozen.parent / "_internal" / "runner-bundle" / "appliance-runner" / "appliance-runner").is_file()
    data = tmp_path / "data"
    env_args = ("--backend", "podman", "--data-dir", str(data))
    built = run(frozen, "sandbox", "build-image", *env_args, data=data)
    assert built.returncode == 0, built.stderr[-2000:]
    assert built.stdout.strip().startswith("localhost/appliance-runner:")
    ran = run(frozen, "sandbox", "run", *env_args, "--", "sh", "-c", "echo hello from $(id -u)", data=data)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "hello from 65534" in ran.stdout
