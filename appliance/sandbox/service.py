"""From settings to a running backend and policy-checked runs: what the agent, the CLI and the gateway
call.

This is the only module that combines policy (sans-IO), host path I/O and an engine. It reads the
allowlist files fresh on every run (creating one later works without a restart, as in NanoClaw) and
never caches a broken one silently: a bad file raises :class:`~appliance.sandbox.policy.AllowlistError`
(one line, ``file:line: what``).

Everything comes from ``[sandbox]`` (:class:`~appliance.config.settings.SandboxSettings`): engine,
socket, image, default network, allowlist files, workspaces dir, limits, tools, warm pool. Paths:

- workspaces: ``sandbox.workspaces_dir`` or ``<data_dir>/workspaces`` (one dir per group);
- runtime dir (engine socket, containers.conf, per-run FIFOs): ``<data_dir>/sandbox/run``, or a short
  per-data-dir dir under ``/run`` when that path is too long for unix sockets;
- protected (never mountable, nor anything above them): the data dir except the workspaces, the
  appliance's config dir and both allowlist files.

:class:`SandboxService` is the long-lived form (one engine connection, optional warm pool), opened with
:func:`open_sandbox_service`; :func:`run_in_sandbox` is one run on a backend the caller holds.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from appliance.sandbox.backend import RunResult, SandboxBackend, run_staged
from appliance.sandbox.image import IMAGE_REPO
from appliance.sandbox.paths import resolve_path
from appliance.sandbox.pipes import default_runtime_dir
from appliance.sandbox.policy import (
    EgressAllowlist,
    Limits,
    MountAllowlist,
    MountRequest,
    NetMode,
    RunSpec,
    build_run_spec,
    parse_egress_allowlist,
    parse_mount_allowlist,
    resolve_mounts,
)
from appliance.sandbox.pool import WarmPool

__all__ = [
    "SandboxPaths",
    "SandboxService",
    "current_image",
    "limits_of",
    "load_allowlists",
    "open_backend",
    "open_sandbox_service",
    "plan_run",
    "probe_engine",
    "run_in_sandbox",
]

log = get_logger("appliance.sandbox")

_MAX_RUNTIME_DIR = 60  # + "/run-xxxxxxxx/egress.sock" must stay under the 108-byte sun_path limit


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else ""


def runtime_dir_for(data_dir: str) -> str:
    """``<data_dir>/sandbox/run``, or ``<default runtime dir>/<hash of data_dir>`` when too long."""
    path = os.path.join(data_dir, "sandbox", "run")
    if len(path) <= _MAX_RUNTIME_DIR:
        return path
    return os.path.join(default_runtime_dir(), hashlib.sha256(data_dir.encode()).hexdigest()[:12])


@attrs.frozen
class SandboxPaths:
    """Where the sandbox keeps things. ``protected`` may never be mounted into a container (nor anything
    above them); an empty allowlist path means "none"."""

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
        sandbox = settings.sandbox
        data = _expand(settings.data_dir)
        config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        mount_allowlist = _expand(sandbox.mount_allowlist)
        egress_allowlist = _expand(sandbox.egress_allowlist)
        return cls(
            data_dir=data,
            runtime_dir=runtime_dir or runtime_dir_for(data),
            workspaces=_expand(sandbox.workspaces_dir) or os.path.join(data, "workspaces"),
            mount_allowlist=mount_allowlist,
            egress_allowlist=egress_allowlist,
            image_file=os.path.join(data, "sandbox", "runner-image"),
            protected=tuple(
                p
                for p in (data, os.path.join(config_home, "appliance"), mount_allowlist, egress_allowlist)
                if p
            ),
            home=os.path.expanduser("~"),
        )

    def workspace(self, group: str) -> str:
        return os.path.join(self.workspaces, group)

    def shared(self) -> str:
        return os.path.join(self.workspaces, "shared")

    def protected_now(self) -> tuple[str, ...]:
        """``protected`` with any dir that holds the workspaces replaced by its other entries (listed
        now, so files created later are covered), so the workspaces stay mountable."""
        out: list[str] = []
        ws = self.workspaces.rstrip("/")
        for prot in self.protected:
            prot = prot.rstrip("/")
            if not ws.startswith(prot + "/"):
                out.append(prot)
                continue
            current = prot
            for part in ws[len(prot) + 1 :].split("/"):
                with contextlib.suppress(OSError):
                    out.extend(os.path.join(current, e) for e in sorted(os.listdir(current)) if e != part)
                current = os.path.join(current, part)
        return tuple(out)


def load_allowlists(paths: SandboxPaths) -> tuple[MountAllowlist | None, EgressAllowlist]:
    """Read both allowlist files; an unset or missing file means none (no extra mounts, no egress).

    Raises :class:`~appliance.sandbox.policy.AllowlistError` for a bad entry.
    """
    mounts: MountAllowlist | None = None
    egress = EgressAllowlist()
    if paths.mount_allowlist:
        with contextlib.suppress(FileNotFoundError):
            text = Path(paths.mount_allowlist).read_text("utf-8")
            mounts = parse_mount_allowlist(text, paths.mount_allowlist)
    if paths.egress_allowlist:
        with contextlib.suppress(FileNotFoundError):
            text = Path(paths.egress_allowlist).read_text("utf-8")
            egress = parse_egress_allowlist(text, paths.egress_allowlist)
    return mounts, egress


def current_image(paths: SandboxPaths, sandbox: SandboxSettings | None = None) -> str:
    """``sandbox.image`` when set, else the tag written by the last ``build-image``.

    Raises :class:`SandboxUnavailable` when neither exists.
    """
    if sandbox is not None and sandbox.image:
        return sandbox.image
    try:
        tag = Path(paths.image_file).read_text("utf-8").split()[0]
    except (FileNotFoundError, IndexError):
        tag = ""
    if not tag.startswith(IMAGE_REPO + ":"):
        raise SandboxUnavailable("no runner image built yet: run `appliance sandbox build-image`")
    return tag


def limits_of(sandbox: SandboxSettings, **overrides: float | None) -> Limits:
    """The run limits ``[sandbox]`` configures; ``overrides`` that are not None win."""
    values: dict[str, float] = {
        "cpus": sandbox.cpus,
        "memory_mb": sandbox.memory_mb,
        "pids": sandbox.pids,
        "timeout_s": sandbox.timeout_s,
        "output_cap_bytes": sandbox.output_cap_bytes,
        "tmpfs_mb": sandbox.tmpfs_mb,
        "nofile": sandbox.nofile,
        "nproc": sandbox.nproc,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Limits(
        cpus=float(values["cpus"]),
        memory_mb=int(values["memory_mb"]),
        pids=int(values["pids"]),
        timeout_s=float(values["timeout_s"]),
        output_cap_bytes=int(values["output_cap_bytes"]),
        tmpfs_mb=int(values["tmpfs_mb"]),
        nofile=int(values["nofile"]),
        nproc=int(values["nproc"]),
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


def plan_run(
    paths: SandboxPaths,
    *,
    group: str,
    argv: Iterable[str],
    limits: Limits,
    image: str,
    is_main: bool | None = None,
    network: NetMode = NetMode.NONE,
    extra_mounts: Iterable[MountRequest] = (),
    env: Mapping[str, str] | None = None,
) -> RunSpec:
    """Apply the group's policy: the one :class:`RunSpec` to run. Creates the group's workspace.

    Raises :class:`~appliance.sandbox.policy.SandboxRefused` (policy) or ``AllowlistError`` (bad file).
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
        protected=paths.protected_now(),
    )
    for rejection in rejections:
        log.warning(
            "sandbox_mount_rejected", group=group, path=rejection.request.host_path, reason=rejection.reason
        )
    return build_run_spec(
        image=image,
        argv=argv,
        mounts=mounts,
        limits=limits,
        group=group,
        network=network,
        egress=egress,
        env=env,
    )


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
    """Apply the group's policy and run ``argv`` cold on ``backend``.

    Raises :class:`~appliance.sandbox.policy.SandboxRefused` (policy), ``AllowlistError`` (bad file),
    :class:`SandboxUnavailable` (engine).
    """
    spec = plan_run(
        paths,
        group=group,
        argv=argv,
        limits=limits,
        image=image,
        is_main=is_main,
        network=network,
        extra_mounts=extra_mounts,
        env=env,
    )
    return await backend.run(spec, stdin)


class SandboxService:
    """The sandbox as the appliance holds it: settings, one engine connection (opened on first use),
    and the warm pool when ``warm_pool``. Create with :func:`open_sandbox_service`."""

    def __init__(
        self,
        sandbox: SandboxSettings,
        paths: SandboxPaths,
        nursery: trio.Nursery,
        *,
        backend_name: str,
        socket: str,
        warm_pool: bool,
        engine: SandboxBackend | None = None,
    ) -> None:
        self.settings = sandbox
        self.paths = paths
        self.backend_name = backend_name
        self.socket = socket
        self.warm_pool = warm_pool
        self._nursery = nursery
        self._engine = engine
        self._connect_lock = trio.Lock()
        self._closing = trio.Event()
        self.pool: WarmPool | None = None

    async def backend(self) -> SandboxBackend:
        """The engine backend, connected (and swept of orphans) on first use.

        Raises :class:`SandboxUnavailable` when the engine does not come up (the next call retries).
        """
        async with self._connect_lock:
            if self._engine is None:
                self._engine = await self._nursery.start(self._hold_backend)
            if self.warm_pool and self.pool is None:
                self.pool = WarmPool(self._engine, self._engine.runtime_dir, self._nursery)
            return self._engine

    async def _hold_backend(
        self, task_status: trio.TaskStatus[SandboxBackend] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with open_backend(
            self.backend_name, socket=self.socket, runtime_dir=self.paths.runtime_dir
        ) as b:
            task_status.started(b)
            await self._closing.wait()

    def plan(
        self,
        *,
        group: str,
        argv: Iterable[str],
        network: NetMode | None = None,
        limits: Limits | None = None,
        image: str | None = None,
        is_main: bool | None = None,
        extra_mounts: Iterable[MountRequest] = (),
        env: Mapping[str, str] | None = None,
    ) -> RunSpec:
        """The policy-checked spec for a run, with ``[sandbox]`` defaults for what is not given."""
        return plan_run(
            self.paths,
            group=group,
            argv=argv,
            limits=limits or limits_of(self.settings),
            image=image or current_image(self.paths, self.settings),
            is_main=is_main,
            network=network or NetMode(self.settings.network),
            extra_mounts=extra_mounts,
            env=env,
        )

    async def run(
        self,
        *,
        group: str,
        argv: Iterable[str],
        network: NetMode | None = None,
        limits: Limits | None = None,
        image: str | None = None,
        is_main: bool | None = None,
        extra_mounts: Iterable[MountRequest] = (),
        stdin: bytes | bytearray = b"",
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run ``argv`` for ``group`` under its policy: warm when the pool holds a fitting slot.

        ``stdin`` is consumed (a ``bytearray`` is zeroed). Raises ``SandboxRefused`` (policy),
        ``AllowlistError`` (bad file), :class:`SandboxUnavailable` (engine).
        """
        try:
            spec = self.plan(
                group=group,
                argv=argv,
                network=network,
                limits=limits,
                image=image,
                is_main=is_main,
                extra_mounts=extra_mounts,
                env=env,
            )
            backend = await self.backend()
        except BaseException:
            if isinstance(stdin, bytearray):
                stdin[:] = bytes(len(stdin))
            raise
        if self.pool is None:
            return await backend.run(spec, stdin)
        staged = self.pool.take(spec)
        try:
            if staged is not None:
                return await run_staged(backend, staged, spec, stdin)
            return await backend.run(spec, stdin)
        finally:  # after the run: staging alongside it would slow it down (the engine serialises)
            self.pool.refill(spec)

    async def prewarm(
        self, *, group: str = "main", network: NetMode | None = None, wait: bool = False
    ) -> bool:
        """Stage a pool slot for ``group`` now (no-op without the pool); with ``wait``, until it is ready.

        Returns whether a slot is ready. Raises what :meth:`plan` and :meth:`backend` raise.
        """
        spec = self.plan(group=group, argv=("true",), network=network)
        await self.backend()
        if self.pool is None:
            return False
        self.pool.refill(spec)
        return await self.pool.wait_ready(spec) if wait else False

    async def aclose(self) -> None:
        """Remove the pool's containers, then let go of the engine (stopping a service we started)."""
        if self.pool is not None:
            await self.pool.aclose()
        self._closing.set()


@contextlib.asynccontextmanager
async def open_sandbox_service(
    settings: Settings,
    *,
    paths: SandboxPaths | None = None,
    backend: str | None = None,
    socket: str | None = None,
    warm_pool: bool | None = None,
    engine: SandboxBackend | None = None,
    prewarm: bool = True,
) -> AsyncIterator[SandboxService]:
    """Open the sandbox ``settings`` describe. The engine connects on first use; with the warm pool on
    (and ``prewarm``), a slot for the main group is staged right away in the background.

    ``engine`` is an already open backend to use (not closed here). Raises :class:`ConfigError` for
    ``sandbox.backend = "none"`` without ``backend``.
    """
    sandbox = settings.sandbox
    name = backend or sandbox.backend
    if name not in ("podman", "docker") and engine is None:
        raise ConfigError("sandbox.backend is none: no engine to run commands in", key="sandbox.backend")
    async with trio.open_nursery() as nursery:
        service = SandboxService(
            sandbox,
            paths or SandboxPaths.of(settings),
            nursery,
            backend_name=name,
            socket=sandbox.socket if socket is None else socket,
            warm_pool=sandbox.warm_pool if warm_pool is None else warm_pool,
            engine=engine,
        )
        try:
            if service.warm_pool and prewarm:
                nursery.start_soon(_prewarm_quietly, service)
            yield service
        finally:
            with trio.CancelScope(shield=True):
                await service.aclose()
            nursery.cancel_scope.cancel()


async def _prewarm_quietly(service: SandboxService) -> None:
    try:
        await service.prewarm()
    except ApplianceError as exc:
        log.warning("sandbox_prewarm_failed", reason=exc.one_line())


def _prepare_dirs(workspace: str, shared: str) -> str | None:
    """Create the group's workspace (owned by the sandbox user); return the shared dir if it exists."""
    os.makedirs(workspace, mode=0o770, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(workspace, 65534, 65534)
    return shared if os.path.isdir(shared) else None


def probe_engine(settings: Settings) -> str:
    """For ``appliance doctor``: which engine answers, and its version. Raises :class:`ApplianceError`."""
    sandbox = settings.sandbox
    runtime_dir = SandboxPaths.of(settings).runtime_dir
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
        async with open_backend(
            sandbox.backend, socket=socket, runtime_dir=runtime_dir, clean_orphans=False
        ) as backend:
            return f"{backend.name} {await backend.version()} at {socket}"

    try:
        return trio.run(_probe)
    except ApplianceError:
        raise
    except OSError as exc:
        raise SandboxUnavailable(f"{sandbox.backend} at {socket}: {exc}") from exc
