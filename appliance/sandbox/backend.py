"""The one backend interface both engines implement, and the run lifecycle they share.

A backend only knows how to talk to its engine (:class:`Engine`: create, start, wait, kill, inspect,
remove, list). :func:`run_container` owns the lifecycle, the same for both engines::

    pipes + pinned mounts -> create -> start -> re-verify mounts -> release stdin (gate) ->
    pump stdout/stderr under the caps, wait under the timeout (kill on expiry) -> drain -> inspect -> remove

The runner entry blocks on opening the stdin FIFO, so the command starts only after the host re-verified
every bind source against the inode it checked, both on the host path (O_NOFOLLOW walk) and inside the
container (``/proc/<pid>/root/<target>``): a symlink swapped in between fails the run. Errors from
engine clients are translated to :class:`~appliance.errors.SandboxUnavailable` at the backend edge.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Protocol

import attrs
import trio

from appliance.errors import SandboxUnavailable
from appliance.log import get_logger
from appliance.sandbox.oom import OomWatch
from appliance.sandbox.paths import pin_mounts
from appliance.sandbox.pipes import feed_stdin, open_run_pipes
from appliance.sandbox.policy import Mount, MountKind, MountRefused, NetMode, RunSpec
from appliance.sandbox.proxy import serve_egress_proxy

__all__ = ["Engine", "EngineState", "RunResult", "SandboxBackend", "run_container"]

log = get_logger("appliance.sandbox")

EGRESS_SOCKET = "egress.sock"  # inside RUNNER_PIPE_DIR in the container
OWNER_LABEL = "appliance.owner_pid"
SANDBOX_LABEL = "appliance.sandbox"


@attrs.frozen
class RunResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    oom_killed: bool
    duration_ms: int
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    container_id: str = ""

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated


@attrs.frozen
class EngineState:
    exit_code: int
    oom_killed: bool
    pid: int = 0


class Engine(Protocol):
    """What a backend must offer the shared lifecycle. ``mounts`` already include the pipe dir."""

    async def create(
        self, spec: RunSpec, mounts: tuple[Mount, ...], name: str, labels: dict[str, str]
    ) -> str:
        """Create (not start) the container; return its id."""
        ...

    async def start(self, cid: str) -> None: ...

    async def wait(self, cid: str) -> int: ...

    async def kill(self, cid: str) -> None: ...

    async def state(self, cid: str) -> EngineState: ...

    async def remove(self, cid: str) -> None: ...

    async def list_labelled(self, label: str) -> list[tuple[str, dict[str, str]]]: ...


class SandboxBackend(Protocol):
    """The public surface: what the agent and the CLI use."""

    name: str

    async def ping(self) -> None:
        """Raise :class:`SandboxUnavailable` when the engine does not answer."""
        ...

    async def version(self) -> str: ...

    async def ensure_image(self, image: str) -> None:
        """Raise :class:`SandboxUnavailable` when ``image`` is not present locally (we never pull)."""
        ...

    async def run(self, spec: RunSpec, stdin: bytes | bytearray = b"") -> RunResult: ...

    async def remove_orphans(self) -> int: ...

    async def aclose(self) -> None: ...


def _ids(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        raise MountRefused(f"sandbox user must be numeric uid:gid, got {user!r}")
    return int(uid), int(gid or uid)


def _verify_unchanged(pinned: dict[str, tuple[int, int]], spec: RunSpec) -> None:
    """Walk every bind source again (O_NOFOLLOW) and compare inodes with what was pinned."""
    with pin_mounts(spec.mounts, pinned):
        pass


def _verify_mounted(pid: int, pinned: dict[str, tuple[int, int]], spec: RunSpec) -> None:
    """Stat each bind target *inside* the container (``/proc/<pid>/root``): it must be the inode we
    checked. This closes the last window (a swap and swap-back around the engine's mount)."""
    if pid <= 0:
        log.warning("sandbox_mount_verify_skipped", group=spec.group, reason="container init already gone")
        return
    for mount in spec.mounts:
        if mount.kind is not MountKind.BIND:
            continue
        try:
            st = os.stat(f"/proc/{pid}/root{mount.target}", follow_symlinks=False)
        except OSError as exc:
            raise MountRefused(f"cannot verify the mount at {mount.target}: {exc.strerror}") from exc
        if (st.st_dev, st.st_ino) != pinned[mount.source]:
            raise MountRefused(f"the directory mounted at {mount.target} is not the one checked")


def _identities(spec: RunSpec) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for mount in spec.mounts:
        if mount.kind is MountKind.BIND:
            st = os.stat(mount.source, follow_symlinks=False)
            out[mount.source] = (st.st_dev, st.st_ino)
    return out


async def run_container(
    engine: Engine, spec: RunSpec, stdin: bytes | bytearray, runtime_dir: str
) -> RunResult:
    """Run ``spec`` on ``engine`` to completion; see the module docstring for the steps.

    ``stdin`` is consumed: a ``bytearray`` is zeroed after it was written. Raises :class:`MountRefused`
    when a bind source changed after the policy checked it, :class:`SandboxUnavailable` for engine errors.
    """
    uid, gid = _ids(spec.user)
    data = stdin if isinstance(stdin, bytearray) else bytearray(stdin)
    name = f"appliance-{spec.group or 'run'}-{secrets.token_hex(4)}"
    labels = {**dict(spec.labels), SANDBOX_LABEL: "1", OWNER_LABEL: str(os.getpid())}
    started = time.monotonic()
    async with (
        open_run_pipes(
            runtime_dir, uid=uid, gid=gid, has_stdin=True, cap=spec.limits.output_cap_bytes
        ) as pipes,
        _egress_proxy(spec, pipes.path),
    ):
        try:
            pinned = _identities(spec)
        except OSError as exc:
            raise MountRefused(f"mount source vanished: {exc.filename}") from exc
        cid = ""
        with contextlib.closing(OomWatch()) as oom_watch:
            try:
                with pin_mounts(spec.mounts, pinned):
                    cid = await engine.create(spec, (*spec.mounts, pipes.mount()), name, labels)
                    await engine.start(cid)
                pid = (await engine.state(cid)).pid
                try:  # the command is still blocked on the stdin gate here
                    _verify_unchanged(pinned, spec)
                    _verify_mounted(pid, pinned, spec)
                except MountRefused:
                    await engine.kill(cid)
                    raise
                if OomWatch.supported():
                    oom_watch.arm(pid)
                timed_out = False
                async with _single_errors(), trio.open_nursery() as nursery:
                    nursery.start_soon(pipes.pump, "stdout")
                    nursery.start_soon(pipes.pump, "stderr")
                    with trio.move_on_after(spec.limits.timeout_s) as deadline:
                        nursery.start_soon(feed_stdin, os.path.join(pipes.path, "stdin"), data)
                        await engine.wait(cid)
                    if deadline.cancelled_caught:
                        timed_out = True
                        await engine.kill(cid)
                        with trio.move_on_after(10):
                            await engine.wait(cid)
                    nursery.cancel_scope.cancel()
                pipes.drain()
                state = await engine.state(cid)
            finally:
                data[:] = bytes(len(data))
                if cid:
                    with trio.CancelScope(shield=True), trio.move_on_after(15):
                        await engine.remove(cid)
            oom = state.oom_killed or await oom_watch.oom_killed(
                sigkilled=state.exit_code == 137 and not timed_out
            )
    duration_ms = int((time.monotonic() - started) * 1000)
    result = RunResult(
        exit_code=state.exit_code,
        stdout=pipes.stdout.value(),
        stderr=pipes.stderr.value(),
        timed_out=timed_out,
        oom_killed=oom,
        duration_ms=duration_ms,
        stdout_truncated=pipes.stdout.truncated,
        stderr_truncated=pipes.stderr.truncated,
        container_id=cid,
    )
    log.info(
        "sandbox_run_finished",
        group=spec.group,
        exit_code=result.exit_code,
        timed_out=timed_out,
        oom_killed=result.oom_killed,
        truncated=result.truncated,
        duration_ms=duration_ms,
    )
    return result


@contextlib.asynccontextmanager
async def _egress_proxy(spec: RunSpec, run_dir: str) -> AsyncIterator[None]:
    """For ``net allow``: serve the run's audited egress proxy at ``<pipes>/egress.sock`` during the run.

    The container itself keeps network ``none``; the socket is its only way out.
    """
    if spec.network is not NetMode.ALLOW:
        yield
        return
    path = os.path.join(run_dir, EGRESS_SOCKET)
    async with _single_errors(), trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve_egress_proxy, path, spec.egress, group=spec.group))
        yield
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def _single_errors() -> AsyncIterator[None]:
    """Hand a nursery's lone error (MountRefused, SandboxUnavailable, ...) through unwrapped, so callers
    catch our typed errors, not an ExceptionGroup around one."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from group
        raise


async def remove_orphans(engine: Engine) -> int:
    """Remove our containers whose owning process is gone (a crash left them behind)."""
    removed = 0
    for cid, labels in await engine.list_labelled(f"{SANDBOX_LABEL}=1"):
        owner = labels.get(OWNER_LABEL, "")
        if owner.isdigit() and _alive(int(owner)):
            continue
        await engine.remove(cid)
        removed += 1
    if removed:
        log.info("sandbox_orphans_removed", count=removed)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unavailable(what: str, exc: BaseException) -> SandboxUnavailable:
    """Translate an engine client's exception at the edge (message only, never a traceback)."""
    return SandboxUnavailable(f"sandbox engine error during {what}: {type(exc).__name__}: {exc}"[:300])
