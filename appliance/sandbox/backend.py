"""The one backend interface both engines implement, and the run lifecycle they share.

A backend only knows how to talk to its engine (:class:`Engine`: create, start, pause, unpause, wait,
kill, inspect, remove, list). The lifecycle is the same for both engines and comes in two halves, so
that the warm pool can do the first one ahead of time::

    stage:   pipes + pinned mounts -> create -> start -> re-verify mounts (host + inside the container)
             [-> wait for the runner's "ready" -> pause]            (the runner now blocks at its gate)
    execute: [re-verify -> unpause] -> egress proxy -> write the request frame (argv, caps, timeout,
             stdin) -> pump stdout/stderr, wait under timeout + grace (kill on expiry) -> drain ->
             read the runner's result record -> inspect -> remove

The container's PID 1 is our runner; it does nothing until it has read its request frame from the
stdin FIFO, so the command starts only after the host re-verified every bind source against the inode it
checked, both on the host path (O_NOFOLLOW walk) and inside the container (``/proc/<pid>/root/<target>``):
a symlink swapped in between fails the run. The runner enforces the timeout and the output caps and
reports the command's exit, CPU and memory in one result record; without that record (the runner was
killed) the result comes from the engine's exit status and says so (``from_engine``). Errors from engine
clients are translated to :class:`~appliance.errors.SandboxUnavailable` at the backend edge.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

import attrs
import trio

from appliance.errors import SandboxUnavailable
from appliance.log import get_logger
from appliance.sandbox.oom import OomWatch
from appliance.sandbox.paths import pin_mounts
from appliance.sandbox.pipes import RunPipes, create_run_pipes, feed_stdin
from appliance.sandbox.policy import Mount, MountKind, MountRefused, NetMode, RunSpec
from appliance.sandbox.proxy import serve_egress_proxy
from appliance.sandbox.wire import RunRecord, RunRequest, encode_frame, parse_result_channel

__all__ = [
    "Engine",
    "EngineState",
    "RunResult",
    "SandboxBackend",
    "Staged",
    "discard_staged",
    "inspect_past_exit_race",
    "run_container",
    "run_staged",
    "stage_container",
]

log = get_logger("appliance.sandbox")
_T = TypeVar("_T")

EGRESS_SOCKET = "egress.sock"  # inside RUNNER_PIPE_DIR in the container
OWNER_LABEL = "appliance.owner_pid"
SANDBOX_LABEL = "appliance.sandbox"
POOL_LABEL = "appliance.pool"
#: the runner kills at the timeout; the host kills the container this much later if it did not
HOST_GRACE_S = 3.0
READY_TIMEOUT_S = 30.0


@attrs.frozen
class RunResult:
    """One run. ``exit_code`` is shell style (128 + signal when killed). CPU, memory and byte counts come
    from the runner's record; ``from_engine`` says the record was missing and ``exit_code`` is the
    engine's status for the container (``runner_errors`` says why)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    oom_killed: bool
    duration_ms: int
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    container_id: str = ""
    exit_signal: int | None = None
    cpu_user_ms: int = 0
    cpu_sys_ms: int = 0
    max_rss_kb: int = 0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    runner_errors: tuple[str, ...] = ()
    from_engine: bool = False
    warm: bool = False

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
        """Create (not start) the container; return its id. The command is not part of it."""
        ...

    async def start(self, cid: str) -> None: ...

    async def pause(self, cid: str) -> None: ...

    async def unpause(self, cid: str) -> None: ...

    async def wait(self, cid: str) -> int: ...

    async def kill(self, cid: str) -> None: ...

    async def state(self, cid: str) -> EngineState: ...

    async def remove(self, cid: str) -> None: ...

    async def list_labelled(self, label: str) -> list[tuple[str, dict[str, str]]]: ...


class SandboxBackend(Engine, Protocol):
    """The public surface: what the service, the CLI and the warm pool use."""

    name: str
    runtime_dir: str

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
        raise MountRefused("cannot verify the mounts: the container's runner is gone")
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


@attrs.define
class Staged:
    """A started container whose runner waits at its gate (paused when ``paused``)."""

    spec: RunSpec
    cid: str
    pid: int
    pipes: RunPipes
    pinned: dict[str, tuple[int, int]]
    oom: OomWatch
    paused: bool = False
    staged_at: float = 0.0

    def release(self) -> None:
        """Close the host's ends of the pipes and the OOM notifier (the container is the caller's)."""
        self.pipes.cleanup()
        self.oom.close()


async def stage_container(
    engine: Engine,
    spec: RunSpec,
    runtime_dir: str,
    *,
    park: bool = False,
    labels: dict[str, str] | None = None,
) -> Staged:
    """Create and start a container for ``spec`` and verify its mounts; with ``park``, also wait for the
    runner's ready line and pause it (the warm pool). The command is not known to the container yet.

    Raises :class:`MountRefused` when a bind source changed after the policy checked it,
    :class:`SandboxUnavailable` for engine errors or a runner that never got ready.
    """
    uid, gid = _ids(spec.user)
    name = f"appliance-{spec.group or 'run'}-{secrets.token_hex(4)}"
    all_labels = {**dict(spec.labels), **(labels or {}), SANDBOX_LABEL: "1", OWNER_LABEL: str(os.getpid())}
    pipes = create_run_pipes(runtime_dir, uid=uid, gid=gid, cap=spec.limits.output_cap_bytes)
    oom = OomWatch()
    cid = ""
    try:
        try:
            pinned = _identities(spec)
        except OSError as exc:
            raise MountRefused(f"mount source vanished: {exc.filename}") from exc
        with pin_mounts(spec.mounts, pinned):
            cid = await engine.create(spec, (*spec.mounts, pipes.mount()), name, all_labels)
            await engine.start(cid)
        pid = (await engine.state(cid)).pid
        _verify_unchanged(pinned, spec)  # the runner is still held at the stdin gate here
        _verify_mounted(pid, pinned, spec)
        if OomWatch.supported():
            oom.arm(pid)
        staged = Staged(spec, cid, pid, pipes, pinned, oom, staged_at=time.monotonic())
        if park:
            await _park(engine, staged)
    except BaseException:
        with trio.CancelScope(shield=True):
            if cid:
                with trio.move_on_after(15), contextlib.suppress(SandboxUnavailable):
                    await engine.remove(cid)
            pipes.cleanup()
            oom.close()
        raise
    return staged


async def _park(engine: Engine, staged: Staged) -> None:
    """Wait for the runner's ready line (it then blocks at its gate), then pause the container."""
    with trio.move_on_after(READY_TIMEOUT_S):
        await staged.pipes.wait_result()
    if not parse_result_channel(bytes(staged.pipes.result))[0]:
        raise SandboxUnavailable("the sandbox runner did not get ready in time")
    await engine.pause(staged.cid)
    staged.paused = True


async def discard_staged(engine: Engine, staged: Staged) -> None:
    """Remove a staged container that will not run (pool shutdown, stale slot). Never raises."""
    with trio.CancelScope(shield=True), trio.move_on_after(15):
        try:
            await _remove(engine, staged.cid)
        except SandboxUnavailable as exc:
            log.warning("sandbox_discard_failed", container=staged.cid[:12], reason=exc.one_line())
    staged.release()


async def run_staged(engine: Engine, staged: Staged, spec: RunSpec, stdin: bytes | bytearray) -> RunResult:
    """Send ``spec``'s command to the staged runner, run it to completion, remove the container.

    ``spec`` must shape the container as ``staged.spec`` did (the pool checks); its argv and env travel
    in the request. ``stdin`` is consumed: a ``bytearray`` is zeroed after it was written. Raises
    :class:`MountRefused` when a pooled container's mounts no longer match what was checked,
    :class:`SandboxUnavailable` for engine errors.
    """
    data = stdin if isinstance(stdin, bytearray) else bytearray(stdin)
    frame = bytearray()
    pipes = staged.pipes
    cid = staged.cid
    started = time.monotonic()
    timed_out = False
    try:
        if staged.paused:  # staged ahead of time: check again that nothing moved since
            _verify_unchanged(staged.pinned, spec)
            _verify_mounted(staged.pid, staged.pinned, spec)
            await engine.unpause(cid)
        request = RunRequest(
            argv=spec.argv,
            cwd=spec.workdir,
            timeout_s=spec.limits.timeout_s,
            out_cap=spec.limits.output_cap_bytes,
            err_cap=spec.limits.output_cap_bytes,
            egress=spec.network is NetMode.ALLOW,
            env=spec.env,
        )
        frame = encode_frame(request, data)
        data[:] = bytes(len(data))
        async with _egress_proxy(spec, pipes.path), _single_errors(), trio.open_nursery() as nursery:
            nursery.start_soon(pipes.pump, "stdout")
            nursery.start_soon(pipes.pump, "stderr")
            with trio.move_on_after(spec.limits.timeout_s + HOST_GRACE_S) as deadline:
                nursery.start_soon(feed_stdin, pipes, frame)
                await _ended(engine, cid, pipes)
            if deadline.cancelled_caught:
                timed_out = True
                await engine.kill(cid)
                with trio.move_on_after(10):
                    await engine.wait(cid)
            nursery.cancel_scope.cancel()
        pipes.drain()
        state = await engine.state(cid)
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(5), contextlib.suppress(SandboxUnavailable):
            await engine.kill(cid)
        staged.release()
        raise
    finally:
        data[:] = bytes(len(data))
        frame[:] = bytes(len(frame))
        with trio.CancelScope(shield=True), trio.move_on_after(15):
            await _remove(engine, cid)
    try:
        _, record, why = parse_result_channel(bytes(pipes.result))
        exit_code = record.status if record is not None else state.exit_code
        timed_out = timed_out or (record is not None and record.timed_out)
        oom = state.oom_killed or await staged.oom.oom_killed(sigkilled=exit_code == 137 and not timed_out)
        result = _result(staged, record, why, state, exit_code, oom, timed_out, started)
    finally:
        staged.release()
    log.info(
        "sandbox_run_finished",
        group=spec.group,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        oom_killed=result.oom_killed,
        truncated=result.truncated,
        duration_ms=result.duration_ms,
        cpu_ms=result.cpu_user_ms + result.cpu_sys_ms,
        max_rss_kb=result.max_rss_kb,
        from_engine=result.from_engine,
        warm=result.warm,
    )
    return result


async def _remove(engine: Engine, cid: str) -> None:
    """Force-remove ``cid``. An engine can refuse for a moment ("container state improper"): the runner
    is exiting right then (we stop waiting at its record), or the container is paused (a pool slot);
    so unpause, wait for the exit and try once more. Raises :class:`SandboxUnavailable`."""
    try:
        await engine.remove(cid)
    except SandboxUnavailable:
        with contextlib.suppress(SandboxUnavailable):
            await engine.unpause(cid)
        with trio.move_on_after(10), contextlib.suppress(SandboxUnavailable):
            await engine.wait(cid)
        await engine.remove(cid)


async def _ended(engine: Engine, cid: str, pipes: RunPipes) -> None:
    """Return when the container exited or the runner's result record arrived, whichever is first.

    The record comes after the runner moved all output into the FIFOs, so nothing is lost by not
    waiting for the runner's own exit (its interpreter teardown and the engine's exit handling are
    most of a short run's latency); the removal that follows ends the container either way.
    """
    async with trio.open_nursery() as nursery:

        async def _first(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(_first, functools.partial(engine.wait, cid))
        nursery.start_soon(_first, pipes.wait_record)


def _result(
    staged: Staged,
    record: RunRecord | None,
    why: str,
    state: EngineState,
    exit_code: int,
    oom: bool,
    timed_out: bool,
    started: float,
) -> RunResult:
    pipes = staged.pipes
    if record is not None:
        if record.out_truncated:
            pipes.stdout.mark_truncated()
        if record.err_truncated:
            pipes.stderr.mark_truncated()
    else:
        log.warning(
            "sandbox_record_missing", container=staged.cid[:12], reason=why, exit_code=state.exit_code
        )
    return RunResult(
        exit_code=exit_code,
        stdout=pipes.stdout.value(),
        stderr=pipes.stderr.value(),
        timed_out=timed_out or (record is not None and record.timed_out),
        oom_killed=oom,
        duration_ms=int((time.monotonic() - started) * 1000),
        stdout_truncated=pipes.stdout.truncated,
        stderr_truncated=pipes.stderr.truncated,
        container_id=staged.cid,
        exit_signal=record.signal if record is not None else None,
        cpu_user_ms=record.user_ms if record is not None else 0,
        cpu_sys_ms=record.sys_ms if record is not None else 0,
        max_rss_kb=record.max_rss_kb if record is not None else 0,
        stdout_bytes=record.out_bytes if record is not None else 0,
        stderr_bytes=record.err_bytes if record is not None else 0,
        runner_errors=record.errors if record is not None else (why,),
        from_engine=record is None,
        warm=staged.paused,
    )


async def run_container(
    engine: Engine, spec: RunSpec, stdin: bytes | bytearray, runtime_dir: str
) -> RunResult:
    """Stage and execute ``spec`` (a cold run); see the module docstring for the steps.

    Raises :class:`MountRefused` or :class:`SandboxUnavailable` as :func:`stage_container` and
    :func:`run_staged` do. ``stdin`` is consumed (a ``bytearray`` is zeroed).
    """
    try:
        staged = await stage_container(engine, spec, runtime_dir)
    except BaseException:
        if isinstance(stdin, bytearray):
            stdin[:] = bytes(len(stdin))
        raise
    return await run_staged(engine, staged, spec, stdin)


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
    """Remove our containers whose owning process is gone (a crash left them behind), paused pool
    containers included."""
    removed = 0
    for cid, labels in await engine.list_labelled(f"{SANDBOX_LABEL}=1"):
        owner = labels.get(OWNER_LABEL, "")
        if owner.isdigit() and _alive(int(owner)):
            continue
        try:
            await _remove(engine, cid)
        except SandboxUnavailable as exc:  # one stuck container must not keep the sandbox from starting
            log.warning("sandbox_orphan_not_removed", container=cid[:12], reason=exc.one_line())
            continue
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


async def inspect_past_exit_race(inspect: Callable[[], Awaitable[_T]], cid: str) -> _T:
    """Inspect a container, retrying Podman's exit race for a moment.

    Podman (its own API and its Docker-compatible one) answers 500 "no such process" when it reads
    ``/proc/<pid>/cgroup`` in the instant the container's process exits; a retry a few ms later sees
    the exited state. Any other error is raised at once.
    """
    for _ in range(50):
        try:
            return await inspect()
        except SandboxUnavailable as exc:
            if "no such process" not in str(exc):
                raise
            await trio.sleep(0.01)
    raise SandboxUnavailable(f"inspect of {cid[:12]} kept racing the container's exit")


def unavailable(what: str, exc: BaseException) -> SandboxUnavailable:
    """Translate an engine client's exception at the edge (message only, never a traceback)."""
    return SandboxUnavailable(f"sandbox engine error during {what}: {type(exc).__name__}: {exc}"[:300])
