"""Podman backend: podman-py against the Podman service socket, started by us when absent.

Why we own a ``containers.conf``: this class of machine needs the ``runc`` runtime, the cgroupfs
manager and lowered ulimits (``crun`` and the default ulimits fail under cgroup v1 hybrid without
CAP_SYS_RESOURCE). We never edit ``/etc``; every podman process we start gets ``CONTAINERS_CONF`` pointing
at the file :func:`write_containers_conf` writes into our runtime dir. When the socket is absent we start
``podman system service --time=0`` ourselves and stop exactly that process in :meth:`aclose`.

podman-py is synchronous (requests); each call runs in a worker thread. Its exceptions are translated
to :class:`~appliance.errors.SandboxUnavailable` here, at the edge.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import trio

from appliance.errors import SandboxUnavailable
from appliance.log import get_logger
from appliance.sandbox.backend import (
    EngineState,
    RunResult,
    inspect_past_exit_race,
    remove_orphans,
    run_container,
    unavailable,
)
from appliance.sandbox.pipes import default_runtime_dir
from appliance.sandbox.policy import Mount, MountKind, NetMode, RunSpec

__all__ = [
    "CONTAINERS_CONF",
    "PodmanBackend",
    "open_podman_backend",
    "podman_env",
    "write_containers_conf",
]

log = get_logger("appliance.sandbox.podman")
T = TypeVar("T")

CONTAINERS_CONF = """\
# Written by the appliance (appliance/sandbox/podman.py); passed to podman via CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def write_containers_conf(runtime_dir: str) -> str:
    """Write our containers.conf into ``runtime_dir`` (idempotent) and return its path."""
    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    path = os.path.join(runtime_dir, "containers.conf")
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == CONTAINERS_CONF:
                return path
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(CONTAINERS_CONF)
    os.replace(tmp, path)
    return path


def podman_env(runtime_dir: str) -> dict[str, str]:
    """Environment for podman processes we start: ours + CONTAINERS_CONF, nothing secret added."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "XDG_RUNTIME_DIR")}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["CONTAINERS_CONF"] = write_containers_conf(runtime_dir)
    return env


async def _in_thread(what: str, fn: Callable[[], T], *, abandon: bool = False) -> T:
    try:
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=abandon)
    except SandboxUnavailable:
        raise
    except Exception as exc:  # podman-py raises requests/podman errors: translate at the edge
        raise unavailable(what, exc) from exc


def _mounts(mounts: tuple[Mount, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in mounts:
        if m.kind is MountKind.TMPFS:
            item: dict[str, Any] = {"type": "tmpfs", "source": "tmpfs", "target": m.target}
            for opt in m.options:
                key, _, value = opt.partition("=")
                item[key] = value
            out.append(item)
        else:
            out.append({"type": "bind", "source": m.source, "target": m.target, "read_only": m.readonly})
    return out


class PodmanBackend:
    """:class:`~appliance.sandbox.backend.SandboxBackend` over podman-py."""

    name = "podman"

    def __init__(self, client: Any, runtime_dir: str, socket: str) -> None:
        self._client = client
        self.runtime_dir = runtime_dir
        self.socket = socket

    # -- SandboxBackend ------------------------------------------------------------------------------
    async def ping(self) -> None:
        ok = await _in_thread("ping", self._client.ping)
        if not ok:
            raise SandboxUnavailable(f"podman at {self.socket} did not answer ping")

    async def version(self) -> str:
        info = await _in_thread("version", self._client.version)
        return str(info.get("Version", "?"))

    async def ensure_image(self, image: str) -> None:
        exists = await _in_thread("image lookup", lambda: self._client.images.exists(image))
        if not exists:
            raise SandboxUnavailable(f"image {image} is not present: run `appliance sandbox build-image`")

    async def run(self, spec: RunSpec, stdin: bytes | bytearray = b"") -> RunResult:
        return await run_container(self, spec, stdin, self.runtime_dir)

    async def remove_orphans(self) -> int:
        return await remove_orphans(self)

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._client.close)

    # -- Engine --------------------------------------------------------------------------------------
    async def create(
        self, spec: RunSpec, mounts: tuple[Mount, ...], name: str, labels: dict[str, str]
    ) -> str:
        lim = spec.limits
        kwargs: dict[str, Any] = {  # no command, no env: both travel in the runner's request
            "name": name,
            "labels": labels,
            "user": spec.user,
            "working_dir": spec.workdir,
            "mounts": [
                *_mounts(mounts),
                {
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "target": "/tmp",
                    "size": f"{lim.tmpfs_mb}m",
                    "mode": "1777",
                },
            ],
            "network_mode": "none",  # allow too: egress only via the proxy socket the runner relays
            "read_only": spec.read_only_root,
            "cap_drop": ["ALL"] if spec.cap_drop_all else [],
            "no_new_privileges": spec.no_new_privileges,
            "mem_limit": lim.memory_mb * 1024 * 1024,
            "memswap_limit": lim.memory_mb * 1024 * 1024,
            "pids_limit": lim.pids,
            "cpu_period": 100_000,
            "cpu_quota": int(lim.cpus * 100_000),
            "ulimits": [
                {"Name": "nofile", "Soft": lim.nofile, "Hard": lim.nofile},
                {"Name": "nproc", "Soft": lim.nproc, "Hard": lim.nproc},
            ],
            "log_config": {"Type": "none"},
        }
        assert spec.network in (NetMode.NONE, NetMode.ALLOW)
        container = await _in_thread("create", lambda: self._client.containers.create(spec.image, **kwargs))
        return str(container.id)

    def _container(self, cid: str) -> Any:
        return self._client.containers.get(cid)

    async def start(self, cid: str) -> None:
        await _in_thread(
            "start", lambda: self._client.api.post(f"/containers/{cid}/start").raise_for_status()
        )

    async def pause(self, cid: str) -> None:
        await _in_thread(
            "pause", lambda: self._client.api.post(f"/containers/{cid}/pause").raise_for_status()
        )

    async def unpause(self, cid: str) -> None:
        await _in_thread(
            "unpause", lambda: self._client.api.post(f"/containers/{cid}/unpause").raise_for_status()
        )

    async def wait(self, cid: str) -> int:
        def _wait() -> int:
            response = self._client.api.post(
                f"/containers/{cid}/wait", params={"condition": ["stopped", "exited"], "interval": "10ms"}
            )
            response.raise_for_status()
            return int(response.json())

        return await _in_thread("wait", _wait, abandon=True)

    async def kill(self, cid: str) -> None:
        def _kill() -> None:
            response = self._client.api.post(f"/containers/{cid}/kill", params={"signal": "SIGKILL"})
            if response.status_code not in (200, 204, 304, 409):  # 409: already stopped
                response.raise_for_status()

        await _in_thread("kill", _kill)

    async def state(self, cid: str) -> EngineState:
        def _state() -> EngineState:
            response = self._client.api.get(f"/containers/{cid}/json")
            response.raise_for_status()
            st = response.json()["State"]
            return EngineState(
                int(st.get("ExitCode", -1)), bool(st.get("OOMKilled", False)), int(st.get("Pid") or 0)
            )

        return await inspect_past_exit_race(lambda: _in_thread("inspect", _state), cid)

    async def remove(self, cid: str) -> None:
        def _remove() -> None:
            response = self._client.api.delete(f"/containers/{cid}", params={"force": True, "v": True})
            if response.status_code not in (200, 204, 404):
                response.raise_for_status()

        await _in_thread("remove", _remove)

    async def list_labelled(self, label: str) -> list[tuple[str, dict[str, str]]]:
        def _list() -> list[tuple[str, dict[str, str]]]:
            response = self._client.api.get(
                "/containers/json", params={"all": "true", "filters": json.dumps({"label": [label]})}
            )
            response.raise_for_status()
            return [(str(c["Id"]), dict(c.get("Labels") or {})) for c in response.json()]

        return await _in_thread("list", _list)


async def _wait_for_socket(path: str, proc: trio.Process, limit_s: float) -> None:
    with trio.move_on_after(limit_s):
        while not os.path.exists(path):  # noqa: ASYNC240 (one stat of a local socket path)
            if proc.returncode is not None:
                raise SandboxUnavailable(f"podman system service exited with {proc.returncode}")
            await trio.sleep(0.02)
        return
    raise SandboxUnavailable(f"podman system service did not create {path} in {limit_s:.0f}s")


@contextlib.asynccontextmanager
async def open_podman_backend(
    *, socket: str = "", runtime_dir: str = "", start_timeout_s: float = 20.0, clean_orphans: bool = True
) -> AsyncIterator[PodmanBackend]:
    """Connect to Podman at ``socket`` (default: our own under ``runtime_dir``), starting the service if
    the socket is absent; stop the service we started on exit.

    Raises :class:`SandboxUnavailable` when podman is not installed or does not come up.
    """
    from podman import PodmanClient  # lazy: heavy import, not needed to start serving

    runtime_dir = runtime_dir or default_runtime_dir()
    socket = socket or os.path.join(runtime_dir, "podman.sock")
    env = podman_env(runtime_dir)
    proc: trio.Process | None = None
    if not os.path.exists(socket):  # noqa: ASYNC240 (one stat of a local socket path)
        try:
            proc = await trio.lowlevel.open_process(
                ["podman", "system", "service", "--time=0", f"unix://{socket}"],
                env=env,
                cwd=runtime_dir,  # conmon drops an "oom" marker file in its working directory
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise SandboxUnavailable("podman is not installed (apt-get install -y podman runc)") from exc
        log.info("podman_service_started", socket=socket, pid=proc.pid)
    try:
        if proc is not None:
            await _wait_for_socket(socket, proc, start_timeout_s)
        client = PodmanClient(base_url=f"unix://{socket}")
        backend = PodmanBackend(client, runtime_dir, socket)
        try:
            await backend.ping()
            if clean_orphans:
                await backend.remove_orphans()
            yield backend
        finally:
            await backend.aclose()
    finally:
        if proc is not None:
            with trio.CancelScope(shield=True):
                proc.terminate()
                with trio.move_on_after(5):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(socket)
            log.info("podman_service_stopped", socket=socket)
