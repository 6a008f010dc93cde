"""From settings to a running backend and a policy-checked run: what the agent and the CLI call.

This is the only module that combines policy (sans-IO), host path I/O and an engine. It reads the
mount allowlist file fresh on every run (creating it later works without a restart, as in NanoClaw) and
never caches a broken one silently: a bad file raises :class:`~appliance.sandbox.policy.AllowlistError`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path

import attrs
import trio

from appliance.config.settings import SandboxSettings, Settings
from appliance.errors import ApplianceError, ConfigError, SandboxUnavailable
from appliance.log import get_logger
from appliance.sandbox.backend import RunResult, SandboxBackend
from appliance.sandbox.image import IMAGE_REPO
from appliance.sandbox.paths import resolve_path
from appliance.sandbox.pipes import default_runtime_dir
from appliance.sandbox.policy import (
    EgressAllowlist,
    Limits,
    MountAllowlist,
    MountRequest,
    NetMode,
    build_run_spec,
    parse_egress_allowlist,
    parse_mount_allowlist,
    resolve_mounts,
)

__all__ = ["SandboxPaths", "load_allowlists", "open_backend", "probe_engine", "run_in_sandbox"]

log = get_logger("appliance.sandbox")


@attrs.frozen
class SandboxPaths:
    """Where the sandbox keeps things. ``protected`` may never be mounted into a container."""

    data_dir: str
    runtime_dir: str
    workspaces: str
    mount_allowlist: str
    egress_allowlist: str
    image_file: str
    protected: tuple[str, ...]
    home: str = "/root"

    @classmethod
    def of(cls, settings: Settings, *, runtime_dir: str = "") -> SandboxPaths:
        data = os.path.abspath(os.path.expanduser(settings.data_dir))
        config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        return cls(
            data_dir=data,
            runtime_dir=runtime_dir or default_runtime_dir(),
            workspaces=os.path.join(os.path.dirname(data), "appliance-workspaces"),
            mount_allowlist=os.path.join(config_home, "appliance", "mount-allowlist"),
            egress_allowlist=os.path.join(config_home, "appliance", "egress-allowlist"),
            image_file=os.path.join(data, "sandbox", "runner-image"),
            protected=(data, os.path.join(config_home, "appliance")),
            home=os.path.expanduser("~"),
        )

    def workspace(self, group: str) -> str:
        return os.path.join(self.workspaces, group)

    def shared(self) -> str:
        return os.path.join(self.workspaces, "shared")


def load_allowlists(paths: SandboxPaths) -> tuple[MountAllowlist | None, EgressAllowlist]:
    """Read both allowlist files; a missing file means none (no extra mounts, no egress)."""
    mounts: MountAllowlist | None = None
    egress = EgressAllowlist()
    with contextlib.suppress(FileNotFoundError):
        mounts = parse_mount_allowlist(Path(paths.mount_allowlist).read_text("utf-8"), paths.mount_allowlist)
    with contextlib.suppress(FileNotFoundError):
        egress = parse_egress_allowlist(
            Path(paths.egress_allowlist).read_text("utf-8"), paths.egress_allowlist
        )
    return mounts, egress


def current_image(paths: SandboxPaths) -> str:
    """The tag written by the last ``build-image``. Raises :class:`SandboxUnavailable` when none."""
    try:
        tag = Path(paths.image_file).read_text("utf-8").strip()
    except FileNotFoundError:
        tag = ""
    if not tag.startswith(IMAGE_REPO + ":"):
        raise SandboxUnavailable("no runner image built yet: run `appliance sandbox build-image`")
    return tag


def limits_of(sandbox: SandboxSettings, **overrides: float) -> Limits:
    values: dict[str, float] = {
        "cpus": sandbox.cpus,
        "memory_mb": sandbox.memory_mb,
        "pids": sandbox.pids,
        "timeout_s": sandbox.timeout_s,
        "output_cap_bytes": sandbox.output_cap_bytes,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Limits(
        cpus=float(values["cpus"]),
        memory_mb=int(values["memory_mb"]),
        pids=int(values["pids"]),
        timeout_s=float(values["timeout_s"]),
        output_cap_bytes=int(values["output_cap_bytes"]),
    )


@contextlib.asynccontextmanager
async def open_backend(
    backend: str, *, socket: str = "", runtime_dir: str = "", clean_orphans: bool = True
) -> AsyncIterator[SandboxBackend]:
    """Open the configured engine backend. ``docker`` without a socket uses ``/var/run/docker.sock``."""
    if backend == "podman":
        from appliance.sandbox.podman import open_podman_backend

        async with open_podman_backend(
            socket=socket, runtime_dir=runtime_dir, clean_orphans=clean_orphans
        ) as podman:
            yield podman
    elif backend == "docker":
        from appliance.sandbox.docker import DEFAULT_SOCKET, open_docker_backend

        async with open_docker_backend(
            socket=socket or DEFAULT_SOCKET, runtime_dir=runtime_dir, clean_orphans=clean_orphans
        ) as docker:
            yield docker
    else:
        raise ConfigError(f"sandbox backend {backend!r} cannot run containers", key="sandbox.backend")


async def run_in_sandbox(
    backend: SandboxBackend,
    paths: SandboxPaths,
    *,
    group: str,
    argv: Iterable[str],
    limits: Limits,
    image: str,
    is_main: bool | None = None,
    network: NetMode = NetMode.NONE,
    extra_mounts: Iterable[MountRequest] = (),
    stdin: bytes | bytearray = b"",
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Apply the group's policy and run ``argv``. Creates the group's workspace when missing.

    Raises :class:`~appliance.sandbox.policy.SandboxRefused` (policy), ``AllowlistError`` (bad file),
    :class:`SandboxUnavailable` (engine).
    """
    main = group == "main" if is_main is None else is_main
    mount_allowlist, egress = load_allowlists(paths)
    workspace = paths.workspace(group)
    shared = _prepare_dirs(workspace, paths.shared())
    patterns = mount_allowlist.patterns() if mount_allowlist is not None else None
    mounts, rejections = resolve_mounts(
        group=group,
        is_main=main,
        workspace=workspace,
        shared=shared,
        requests=extra_mounts,
        allowlist=mount_allowlist,
        resolver=(lambda p: resolve_path(p, patterns)) if patterns else resolve_path,
        home=paths.home,
        protected=paths.protected,
    )
    for rejection in rejections:
        log.warning(
            "sandbox_mount_rejected", group=group, path=rejection.request.host_path, reason=rejection.reason
        )
    spec = build_run_spec(
        image=image,
        argv=argv,
        mounts=mounts,
        limits=limits,
        group=group,
        network=network,
        egress=egress,
        env=env,
    )
    return await backend.run(spec, stdin)


def _prepare_dirs(workspace: str, shared: str) -> str | None:
    """Create the group's workspace (owned by the sandbox user); return the shared dir if it exists."""
    os.makedirs(workspace, mode=0o770, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(workspace, 65534, 65534)
    return shared if os.path.isdir(shared) else None


def probe_engine(settings: Settings) -> str:
    """For ``appliance doctor``: which engine answers, and its version. Raises :class:`ApplianceError`."""
    sandbox = settings.sandbox
    runtime_dir = default_runtime_dir()
    socket = sandbox.socket or (
        os.path.join(runtime_dir, "podman.sock") if sandbox.backend == "podman" else "/var/run/docker.sock"
    )
    if not os.path.exists(socket):
        exe = shutil.which(sandbox.backend)
        if exe is None:
            raise SandboxUnavailable(f"{sandbox.backend} is not installed")
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False, timeout=20)
        return f"{out.stdout.strip()}; service not running (started on demand at {socket})"

    async def _probe() -> str:
        async with open_backend(sandbox.backend, socket=socket, clean_orphans=False) as backend:
            return f"{backend.name} {await backend.version()} at {socket}"

    try:
        return trio.run(_probe)
    except ApplianceError:
        raise
    except OSError as exc:
        raise SandboxUnavailable(f"{sandbox.backend} at {socket}: {exc}") from exc
