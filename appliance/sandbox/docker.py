"""Docker backend: the Docker Engine API over its unix socket, with httpx.

Tested against Podman's Docker-compatible socket (the same service socket speaks both APIs). Only
documented Engine API endpoints are used (``/_ping``, ``/version``, ``/images/{name}/json``,
``/containers/create|start|wait|kill|json|delete``). httpx errors and non-2xx answers become
:class:`~appliance.errors.SandboxUnavailable` here, at the edge.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import trio

from appliance.errors import SandboxUnavailable
from appliance.sandbox.backend import (
    EngineState,
    RunResult,
    inspect_past_exit_race,
    remove_orphans,
    run_container,
    unavailable,
)
from appliance.sandbox.pipes import default_runtime_dir
from appliance.sandbox.policy import Mount, MountKind, RunSpec

__all__ = ["API_VERSION", "DockerBackend", "open_docker_backend"]

API_VERSION = "v1.41"
DEFAULT_SOCKET = "/var/run/docker.sock"


def _mounts(mounts: tuple[Mount, ...]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    binds: list[dict[str, Any]] = []
    tmpfs: dict[str, str] = {}
    for m in mounts:
        if m.kind is MountKind.TMPFS:
            tmpfs[m.target] = ",".join(("ro", *m.options))
        else:
            binds.append({"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.readonly})
    return binds, tmpfs


class DockerBackend:
    """:class:`~appliance.sandbox.backend.SandboxBackend` over the Docker Engine API."""

    name = "docker"

    def __init__(self, client: httpx.AsyncClient, runtime_dir: str, socket: str) -> None:
        self._client = client
        self.runtime_dir = runtime_dir
        self.socket = socket

    async def _call(
        self, what: str, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self._client.request(method, f"/{API_VERSION}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise unavailable(what, exc) from exc
        if response.status_code not in ok:
            raise SandboxUnavailable(
                f"docker API {what} answered {response.status_code}: {response.text.strip()[:200]}"
            )
        return response

    # -- SandboxBackend ------------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._call("ping", "GET", "/_ping")

    async def version(self) -> str:
        info = (await self._call("version", "GET", "/version")).json()
        return f"{info.get('Version', '?')} (API {info.get('ApiVersion', '?')})"

    async def ensure_image(self, image: str) -> None:
        response = await self._call(
            "image lookup", "GET", f"/images/{quote(image, safe='')}/json", ok=(200, 404)
        )
        if response.status_code == 404:
            raise SandboxUnavailable(f"image {image} is not present: run `appliance sandbox build-image`")

    async def run(self, spec: RunSpec, stdin: bytes | bytearray = b"") -> RunResult:
        return await run_container(self, spec, stdin, self.runtime_dir)

    async def remove_orphans(self) -> int:
        return await remove_orphans(self)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- Engine --------------------------------------------------------------------------------------
    async def create(
        self, spec: RunSpec, mounts: tuple[Mount, ...], name: str, labels: dict[str, str]
    ) -> str:
        lim = spec.limits
        binds, tmpfs = _mounts(mounts)
        tmpfs["/tmp"] = f"rw,nosuid,nodev,size={lim.tmpfs_mb}m,mode=1777"
        body = {  # no Cmd, no Env: both travel in the runner's request
            "Image": spec.image,
            "User": spec.user,
            "WorkingDir": spec.workdir,
            "Labels": labels,
            "NetworkDisabled": True,
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "OpenStdin": False,
            "Tty": False,
            "HostConfig": {
                "Mounts": binds,
                "Tmpfs": tmpfs,
                "NetworkMode": "none",  # allow too: egress only via the proxy socket the runner relays
                "ReadonlyRootfs": spec.read_only_root,
                "CapDrop": ["ALL"] if spec.cap_drop_all else [],
                "SecurityOpt": ["no-new-privileges"] if spec.no_new_privileges else [],
                "Memory": lim.memory_mb * 1024 * 1024,
                "MemorySwap": lim.memory_mb * 1024 * 1024,
                "PidsLimit": lim.pids,
                "NanoCpus": int(lim.cpus * 1e9),
                "Ulimits": [
                    {"Name": "nofile", "Soft": lim.nofile, "Hard": lim.nofile},
                    {"Name": "nproc", "Soft": lim.nproc, "Hard": lim.nproc},
                ],
                "LogConfig": {"Type": "none", "Config": {}},
                "Privileged": False,
            },
        }
        response = await self._call("create", "POST", "/containers/create", params={"name": name}, json=body)
        return str(response.json()["Id"])

    async def start(self, cid: str) -> None:
        await self._call("start", "POST", f"/containers/{cid}/start", ok=(204, 304))

    async def pause(self, cid: str) -> None:
        await self._call("pause", "POST", f"/containers/{cid}/pause", ok=(204,))

    async def unpause(self, cid: str) -> None:
        await self._call("unpause", "POST", f"/containers/{cid}/unpause", ok=(204,))

    async def wait(self, cid: str) -> int:
        """Wait for exit. Podman's compatible ``/wait`` polls every 250 ms, so when the container's init
        is a local process we wait on its pidfd and then read the state (Docker behaves the same)."""
        exit_code = await self._wait_pidfd(cid)
        if exit_code is not None:
            return exit_code
        response = await self._call("wait", "POST", f"/containers/{cid}/wait", timeout=None)
        return int(response.json().get("StatusCode", -1))

    async def _wait_pidfd(self, cid: str) -> int | None:
        info = await self._inspect_state(cid)
        if not info.get("Running"):
            return int(info.get("ExitCode", -1)) if info.get("Status") == "exited" else None
        try:
            fd = os.pidfd_open(int(info.get("Pid") or 0))
        except (OSError, ValueError):
            return None
        try:  # the pid cannot have been reused: the container was running before we opened it
            await trio.lowlevel.wait_readable(fd)
        finally:
            os.close(fd)
        for _ in range(400):
            info = await self._inspect_state(cid)
            if not info.get("Running") and info.get("Status") in ("exited", "stopped"):
                return int(info.get("ExitCode", -1))
            await trio.sleep(0.005)
        return None

    async def _inspect_state(self, cid: str) -> dict[str, Any]:
        """``State`` of a container (Podman's compatible API races the container's exit: retried)."""

        async def inspect() -> dict[str, Any]:
            state: dict[str, Any] = (await self._call("inspect", "GET", f"/containers/{cid}/json")).json()[
                "State"
            ]
            return state

        return await inspect_past_exit_race(inspect, cid)

    async def kill(self, cid: str) -> None:
        await self._call(
            "kill", "POST", f"/containers/{cid}/kill", params={"signal": "SIGKILL"}, ok=(204, 304, 409)
        )

    async def state(self, cid: str) -> EngineState:
        st = await self._inspect_state(cid)
        return EngineState(
            int(st.get("ExitCode", -1)), bool(st.get("OOMKilled", False)), int(st.get("Pid") or 0)
        )

    async def remove(self, cid: str) -> None:
        await self._call(
            "remove",
            "DELETE",
            f"/containers/{cid}",
            params={"force": "true", "v": "true"},
            ok=(200, 204, 404),
        )

    async def list_labelled(self, label: str) -> list[tuple[str, dict[str, str]]]:
        filters = json.dumps({"label": [label]})
        response = await self._call(
            "list", "GET", "/containers/json", params={"all": "true", "filters": filters}
        )
        return [(str(c["Id"]), dict(c.get("Labels") or {})) for c in response.json()]


@contextlib.asynccontextmanager
async def open_docker_backend(
    *, socket: str = DEFAULT_SOCKET, runtime_dir: str = "", clean_orphans: bool = True
) -> AsyncIterator[DockerBackend]:
    """Connect to a Docker Engine API socket (Docker's, or Podman's compatible one).

    Raises :class:`SandboxUnavailable` when the socket is absent or does not answer.
    """
    if not os.path.exists(socket):  # noqa: ASYNC240 (one stat of a local socket path)
        raise SandboxUnavailable(f"docker socket {socket} does not exist")
    transport = httpx.AsyncHTTPTransport(uds=socket)
    client = httpx.AsyncClient(transport=transport, base_url="http://docker", timeout=30.0)
    backend = DockerBackend(client, runtime_dir or default_runtime_dir(), socket)
    try:
        await backend.ping()
        if clean_orphans:
            await backend.remove_orphans()
        yield backend
    finally:
        await backend.aclose()
