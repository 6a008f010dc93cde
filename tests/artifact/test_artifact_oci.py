"""The OCI image FROM scratch: two builds give the same image ID, and the container answers health."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from appliance.sandbox.podman import write_containers_conf
from appliance.testing.process import free_port, wait_http_ok

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.podman,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
]


@pytest.fixture(scope="module")
def podman_env() -> dict[str, str]:
    runtime = tempfile.mkdtemp(prefix="appliance-oci-test-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["CONTAINERS_CONF"] = write_containers_conf(runtime)
    return env


def test_oci_image_is_reproducible_and_answers_health(frozen: Path, podman_env: dict[str, str]) -> None:
    dist = frozen.parent.parent
    out = subprocess.run(
        [str(ROOT / "image" / "build-oci.sh"), str(dist)],
        env={**podman_env, "CHECK_TWICE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "same image ID" in out.stdout
    tag = re.search(r"image (\S+) id", out.stdout)
    assert tag is not None
    assert list(dist.glob("appliance-*.oci.tar"))

    port = free_port()
    run = subprocess.run(
        ["podman", "run", "-d", "--rm", "--network", "host", "-e", "APPLIANCE_GATEWAY_TOKEN=oci-test-token-0123456789",
         tag.group(1), "serve", "--port", str(port)],
        env=podman_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()
    try:
        assert wait_http_ok(port, "/health", 30.0).get("ok") is True
        whoami = subprocess.run(
            ["podman", "inspect", "--format", "{{.Config.User}}", cid],
            env=podman_env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert whoami.stdout.strip() == "10001:10001"
    finally:
        subprocess.run(
            ["podman", "stop", "-t", "10", cid], env=podman_env, capture_output=True, timeout=60, check=False
        )
