# ruff: noqa: ASYNC240  (tiny fixture-file set-up inside async tests; no event-loop work to block)
"""Settings -> paths/limits/allowlists (no engine), and the long-lived service with its warm pool
against real Podman (both backends): slots are paused at the gate, taken, replaced, checked, removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from appliance.config.settings import SandboxSettings, Settings
from appliance.errors import ConfigError, SandboxUnavailable
from appliance.sandbox.backend import POOL_LABEL, SANDBOX_LABEL, SandboxBackend
from appliance.sandbox.policy import (
    AllowlistError,
    Limits,
    MountRefused,
    MountRequest,
    NetMode,
    SandboxRefused,
)
from appliance.sandbox.pool import same_shape
from appliance.sandbox.service import (
    SandboxPaths,
    SandboxService,
    current_image,
    limits_of,
    load_allowlists,
    open_backend,
    open_sandbox_service,
    plan_run,
    runtime_dir_for,
)

LIMITS = Limits(cpus=1.0, memory_mb=64, pids=32, timeout_s=20, output_cap_bytes=4096)


def _settings(tmp_path: Path, **sandbox: object) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), sandbox=SandboxSettings(**sandbox))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ settings


def test_paths_come_from_settings(tmp_path: Path) -> None:
    paths = SandboxPaths.of(_settings(tmp_path))
    data = str(tmp_path / "data")
    assert paths.workspaces == os.path.join(data, "workspaces")
    assert (paths.mount_allowlist, paths.egress_allowlist) == ("", "")
    assert paths.runtime_dir == runtime_dir_for(data)
    assert data in paths.protected
    custom = SandboxPaths.of(
        _settings(
            tmp_path,
            workspaces_dir=str(tmp_path / "ws"),
            mount_allowlist=str(tmp_path / "conf/mounts"),
            egress_allowlist=str(tmp_path / "conf/egress"),
        )
    )
    assert custom.workspaces == str(tmp_path / "ws")
    assert custom.mount_allowlist == str(tmp_path / "conf/mounts")
    assert {str(tmp_path / "conf/mounts"), str(tmp_path / "conf/egress")} <= set(custom.protected)


def test_runtime_dir_is_under_the_data_dir_unless_too_long_for_sockets() -> None:
    assert runtime_dir_for("/var/lib/appliance") == "/var/lib/appliance/sandbox/run"
    long = "/tmp/" + "x" * 80
    fallback = runtime_dir_for(long)
    assert not fallback.startswith(long)
    assert fallback == runtime_dir_for(long)  # stable per data dir
    assert len(fallback) < 60


def test_workspaces_inside_the_data_dir_stay_mountable_and_the_rest_protected(tmp_path: Path) -> None:
    settings = _settings(tmp_path, mount_allowlist=str(tmp_path / "mounts"))
    paths = attrs.evolve(SandboxPaths.of(settings), home=str(tmp_path))
    data = Path(paths.data_dir)
    (data / "keys").mkdir(parents=True)
    (data / "appliance.db").write_text("")
    (tmp_path / "mounts").write_text(f"allow {tmp_path} rw\n")
    assert set(paths.protected_now()) >= {str(data / "keys"), str(data / "appliance.db")}
    assert paths.data_dir not in paths.protected_now()
    spec = plan_run(
        paths,
        group="main",
        argv=["true"],
        limits=LIMITS,
        image="img",
        extra_mounts=[MountRequest(str(data), "data"), MountRequest(str(data / "keys"), "keys")],
    )
    assert [m.target for m in spec.mounts] == ["/workspace/group"]  # both extra mounts refused
    assert spec.mounts[0].source == str(data / "workspaces" / "main")


def test_bad_allowlist_entries_keep_their_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "egress").write_text("ok.example.com\nbad host name\n")
    paths = SandboxPaths.of(_settings(tmp_path, egress_allowlist=str(tmp_path / "egress")))
    with pytest.raises(AllowlistError) as info:
        load_allowlists(paths)
    assert info.value.one_line().startswith(f"{tmp_path / 'egress'}:2: ")


def test_limits_and_image_come_from_settings(tmp_path: Path) -> None:
    sandbox = SandboxSettings(tmpfs_mb=32, nofile=512, nproc=256, memory_mb=128, image="localhost/x:1")
    limits = limits_of(sandbox, timeout_s=5, memory_mb=None)
    assert (limits.tmpfs_mb, limits.nofile, limits.nproc, limits.memory_mb, limits.timeout_s) == (
        32,
        512,
        256,
        128,
        5.0,
    )
    paths = SandboxPaths.of(_settings(tmp_path))
    assert current_image(paths, sandbox) == "localhost/x:1"
    with pytest.raises(SandboxUnavailable, match="build-image"):
        current_image(paths, SandboxSettings())


def test_pool_slots_fit_only_the_same_container_shape(tmp_path: Path) -> None:
    paths = SandboxPaths.of(_settings(tmp_path))
    one = plan_run(paths, group="main", argv=["a"], limits=LIMITS, image="img")
    assert same_shape(one, attrs.evolve(one, argv=("b", "c"), env=(("TZ", "UTC"),)))
    assert not same_shape(one, attrs.evolve(one, image="img2"))
    assert not same_shape(one, attrs.evolve(one, limits=attrs.evolve(LIMITS, memory_mb=65)))
    (Path(paths.workspace("main")) / ".env").write_text("x")
    masked = plan_run(paths, group="main", argv=["a"], limits=LIMITS, image="img")
    assert not same_shape(one, masked)


async def test_backend_none_cannot_open_a_service(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.backend is none"):
        async with open_sandbox_service(_settings(tmp_path)):
            pass


# ------------------------------------------------------------------------------------------ warm pool


@pytest.fixture
async def service(
    backend: SandboxBackend, tmp_path: Path, runtime_dir: str, runner_image: str
) -> AsyncIterator[SandboxService]:
    settings = _settings(tmp_path, image=runner_image, memory_mb=64, pids=32, timeout_s=20, warm_pool=True)
    paths = attrs.evolve(SandboxPaths.of(settings), runtime_dir=runtime_dir)
    async with open_sandbox_service(settings, paths=paths, engine=backend, prewarm=False) as svc:
        yield svc


async def _status(socket: str, cid: str) -> str:
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket), base_url="http://d") as c:
        response = await c.get(f"/v1.41/containers/{cid}/json")
        return str(response.json()["State"]["Status"]) if response.status_code == 200 else "gone"


async def _pool_containers(socket: str) -> list[str]:
    filters = json.dumps({"label": [f"{POOL_LABEL}=1"]})
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket), base_url="http://d") as c:
        listing = (await c.get("/v1.41/containers/json", params={"all": "true", "filters": filters})).json()
    return [str(x["Id"]) for x in listing if x["Labels"].get("appliance.owner_pid") == str(os.getpid())]


async def test_warm_run_takes_the_paused_slot_and_a_replacement_is_staged(
    service: SandboxService, podman_socket: str
) -> None:
    with trio.fail_after(90):
        assert await service.prewarm(wait=True)
        assert service.pool is not None
        (slot,) = await _pool_containers(podman_socket)
        assert await _status(podman_socket, slot) == "paused"
        secret = bytearray(b"s3cret\n")
        result = await service.run(
            group="main", argv=["sh", "-c", 'read s; echo "len=${#s}"; pwd; exit 4'], stdin=secret
        )
        assert (result.exit_code, result.stdout, result.warm) == (4, b"len=6\n/workspace/group\n", True)
        assert result.container_id == slot
        assert secret == bytearray(len(secret))
        assert not result.from_engine
        spec = service.plan(group="main", argv=["true"])
        assert await service.pool.wait_ready(spec)
        (replacement,) = await _pool_containers(podman_socket)
        assert replacement != slot
        assert await _status(podman_socket, slot) == "gone"
    await service.aclose()
    assert await _pool_containers(podman_socket) == []


async def test_a_group_gets_its_own_slot_after_its_first_run(service: SandboxService) -> None:
    with trio.fail_after(90):
        cold = await service.run(group="fam", argv=["echo", "cold"], network=NetMode.NONE)
        assert (cold.stdout, cold.warm) == (b"cold\n", False)
        assert service.pool is not None
        assert await service.pool.wait_ready(service.plan(group="fam", argv=["x"]))
        warm = await service.run(group="fam", argv=["echo", "warm"])
        assert (warm.stdout, warm.warm) == (b"warm\n", True)


async def test_a_stale_slot_is_removed_and_the_run_goes_cold(
    service: SandboxService, podman_socket: str
) -> None:
    with trio.fail_after(90):
        assert await service.prewarm(wait=True)
        (slot,) = await _pool_containers(podman_socket)
        Path(service.paths.workspace("main"), ".env").write_text("TOKEN=x")  # now masked: other mounts
        result = await service.run(group="main", argv=["cat", "/workspace/group/.env"])
        assert (result.warm, result.stdout) == (False, b"")
        with trio.move_on_after(10):
            while await _status(podman_socket, slot) != "gone":  # noqa: ASYNC110 (polls the engine)
                await trio.sleep(0.05)
        assert await _status(podman_socket, slot) == "gone"


async def test_a_workspace_replaced_while_pooled_is_refused(service: SandboxService) -> None:
    """Attack: swap the group's workspace for another directory after the slot was staged. Contained:
    the take re-verifies the mounts against the inodes checked at staging and refuses."""
    with trio.fail_after(90):
        assert await service.prewarm(wait=True)
        ws = Path(service.paths.workspace("main"))
        ws.rename(ws.with_name("main.old"))
        ws.mkdir()
        os.chown(ws, 65534, 65534)
        with pytest.raises(MountRefused):
            await service.run(group="main", argv=["touch", "/workspace/group/leak"])
        assert not (ws.with_name("main.old") / "leak").exists()
        assert not (ws / "leak").exists()


async def test_policy_still_applies_to_warm_runs(service: SandboxService) -> None:
    with trio.fail_after(60), pytest.raises(SandboxRefused, match="secret"):
        await service.run(group="main", argv=["true"], env={"API_TOKEN": "x"})


_CRASHER = """
import sys, trio, attrs
from appliance.config.settings import SandboxSettings, Settings
from appliance.errors import ConfigError, SandboxUnavailable
from appliance.sandbox.service import SandboxPaths, open_sandbox_service
async def main():
    s = Settings(data_dir=sys.argv[1], sandbox=SandboxSettings(backend="podman", socket=sys.argv[2],
                 image=sys.argv[3], warm_pool=True))
    paths = attrs.evolve(SandboxPaths.of(s), runtime_dir=sys.argv[4])
    async with open_sandbox_service(s, paths=paths, prewarm=False) as svc:
        assert await svc.prewarm(wait=True)
        print("ready", flush=True)
        await trio.sleep_forever()
trio.run(main)
"""


async def test_pool_containers_of_a_crashed_owner_are_removed_at_start(
    tmp_path: Path, podman_socket: str, runtime_dir: str, runner_image: str
) -> None:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", _CRASHER, str(tmp_path / "data"), podman_socket, runner_image, runtime_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(90):
            assert proc.stdout is not None
            assert (await proc.stdout.receive_some(100)).startswith(b"ready")
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: nothing cleans up
        await proc.wait()
    with trio.fail_after(60):
        async with open_backend("podman", socket=podman_socket, runtime_dir=runtime_dir) as backend:
            left = await backend.list_labelled(f"{SANDBOX_LABEL}=1")
    assert not [labels for _, labels in left if labels.get("appliance.owner_pid") == str(proc.pid)]
