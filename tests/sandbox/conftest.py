"""Fixtures for the sandbox tests: one Podman service and one runner image per test session.

Engine tests are marked ``podman``; they skip, with the reason, only when podman is not installed
(CI installs it: ``apt-get install -y podman runc busybox-static``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from appliance.sandbox import SandboxBackend, open_backend
from appliance.sandbox.image import build_runner_image
from appliance.sandbox.podman import podman_env

PODMAN = shutil.which("podman")


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sbx-run")
    os.chmod(path, 0o700)
    return str(path)


@pytest.fixture(scope="session")
def podman_socket(runtime_dir: str) -> Iterator[str]:
    """Start our own ``podman system service`` (with our containers.conf) for the session."""
    if PODMAN is None:
        pytest.skip("podman is not installed (apt-get install -y podman runc)")
    socket = os.path.join(runtime_dir, "podman.sock")
    proc = subprocess.Popen(
        [PODMAN, "system", "service", "--time=0", f"unix://{socket}"],
        env=podman_env(runtime_dir),
        cwd=runtime_dir,  # conmon drops an "oom" marker file in its working directory
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(socket):
            assert proc.poll() is None, "podman system service exited early"
            assert time.monotonic() < deadline, "podman system service did not create its socket"
            time.sleep(0.02)
        yield socket
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def runner_image(podman_socket: str, runtime_dir: str) -> str:
    """The ``tools = "shell"`` image (the attack scripts need ``sh``). The frozen runner is built once
    and cached under ``build/runner-bundle/<input hash>``; later sessions reuse it."""
    del podman_socket
    return build_runner_image(podman_env=podman_env(runtime_dir)).tag


@pytest.fixture(scope="session")
def runner_image_none(podman_socket: str, runtime_dir: str) -> str:
    del podman_socket
    return build_runner_image(podman_env=podman_env(runtime_dir), tools="none").tag


@pytest.fixture(params=["podman", "docker"])
async def backend(
    request: pytest.FixtureRequest, podman_socket: str, runtime_dir: str
) -> AsyncIterator[SandboxBackend]:
    """Each engine test runs twice: Podman through podman-py, and the Docker API on Podman's socket."""
    async with open_backend(
        request.param, socket=podman_socket, runtime_dir=runtime_dir, clean_orphans=False
    ) as b:
        yield b
