"""Plugin sidecars: run a plugin process and talk JSON-RPC to it over stdio (trio shell over
:mod:`appliance.plugins.rpc`).

Rules:
- :func:`open_plugin` starts the process, performs the handshake within ``handshake_timeout_s`` and
  yields a :class:`PluginConnection`; leaving the block sends ``shutdown``, closes stdin and kills the
  process if it has not exited within ``stop_timeout_s``;
- :meth:`PluginConnection.call` refuses methods outside the declared-and-granted capabilities before
  sending anything, bounds every call with a timeout (:class:`PluginTimeout`; a late answer is dropped),
  and fails every outstanding call with :class:`PluginCrashed` when the process dies;
- stdout lines are bounded (``max_line_bytes``; an oversized line kills the plugin); each stderr line
  becomes a ``plugin_stderr`` log event with the plugin's name (cut at ``stderr_line_chars``, at most
  ``stderr_lines_per_min`` a minute, the rest counted in ``plugin_stderr_dropped``), and a bounded tail
  is kept for the crash log;
- the plugin runs in its own session (process group): stopping it closes stdin, waits
  ``stop_timeout_s``, then sends SIGTERM to the group, waits again, then SIGKILL; whatever is left of the
  group after the plugin exits is killed, so no helper process it forked outlives it;
- :class:`PluginSupervisor` keeps one plugin running, restarting it with capped jittered backoff after a
  crash; a refused handshake (:class:`PluginRefused`) is not retried: restarting cannot fix it. Its
  ``state`` (``starting``, ``running``, ``restarting``, ``failed``, ``stopped``), ``restarts``, ``pids``
  and ``last_error`` are what ``health`` and ``status`` report.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import random
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import attrs
import trio

from appliance.channels import Backoff
from appliance.errors import ApplianceError
from appliance.log import get_logger
from appliance.plugins.rpc import (
    SUPPORTED_VERSIONS,
    LineBuffer,
    PluginCallFailed,
    PluginCapabilityDenied,
    PluginCrashed,
    PluginManifest,
    PluginProtocolError,
    PluginTimeout,
    RpcNotification,
    RpcResponse,
    check_handshake,
    encode_request,
    parse_message,
)

__all__ = [
    "PluginConnection",
    "PluginSpec",
    "PluginSupervisor",
    "SupervisorState",
    "open_plugin",
    "python_plugin_argv",
]

log = get_logger("appliance.plugins")

HOST_VERSION = "0.1.0"


def _argv(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _caps(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class PluginSpec:
    """How to run one plugin, and what the operator grants it (a capability is a method name)."""

    name: str
    argv: tuple[str, ...] = attrs.field(converter=_argv)
    granted: frozenset[str] = attrs.field(converter=_caps, default=frozenset())
    call_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    stop_timeout_s: float = 2.0
    max_line_bytes: int = 1_048_576
    stderr_tail_bytes: int = 8_192
    stderr_line_chars: int = 2_000
    stderr_lines_per_min: int = 600
    env: dict[str, str] | None = None
    cwd: str | None = None


@attrs.define(eq=False)
class _Waiter:
    event: trio.Event = attrs.Factory(trio.Event)
    response: RpcResponse | None = None
    failure: ApplianceError | None = None


class PluginConnection:
    """A live, handshaken plugin. Calls may run concurrently; writes are serialised by a lock."""

    def __init__(self, spec: PluginSpec, process: trio.Process) -> None:
        self.spec = spec
        self.process = process
        self.manifest: PluginManifest | None = None
        self.stderr_tail = b""
        self.notifications: list[RpcNotification] = []
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._send_lock = trio.Lock()
        self._dead: ApplianceError | None = None

    @property
    def alive(self) -> bool:
        return self._dead is None and self.process.returncode is None

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    async def call(self, method: str, params: Any = None, *, timeout_s: float | None = None) -> Any:
        """Call ``method``; raises PluginCapabilityDenied, PluginTimeout, PluginCrashed, PluginCallFailed."""
        if (
            self.manifest is None
            or method not in self.manifest.capabilities
            or method not in self.spec.granted
        ):
            log.warning("plugin_call_denied", plugin=self.spec.name, method=method)
            raise PluginCapabilityDenied(
                f"plugin {self.spec.name} has no capability {method}",
                details={"plugin": self.spec.name, "method": method},
            )
        return await self._request(method, params, timeout_s or self.spec.call_timeout_s)

    async def _request(self, method: str, params: Any, timeout_s: float) -> Any:
        if self._dead is not None:
            raise self._dead
        rid = next(self._ids)
        waiter = _Waiter()
        self._waiters[rid] = waiter
        try:
            try:
                async with self._send_lock:
                    assert self.process.stdin is not None
                    await self.process.stdin.send_all(encode_request(rid, method, params))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise PluginCrashed(f"plugin {self.spec.name} is not running") from exc
            with trio.move_on_after(timeout_s):
                await waiter.event.wait()
            if not waiter.event.is_set():
                log.warning(
                    "plugin_call_timed_out", plugin=self.spec.name, method=method, timeout_s=timeout_s
                )
                raise PluginTimeout(
                    f"plugin {self.spec.name} did not answer {method} within {timeout_s}s",
                    details={"plugin": self.spec.name, "method": method},
                )
        finally:
            self._waiters.pop(rid, None)
        if waiter.failure is not None:
            raise waiter.failure
        assert waiter.response is not None
        if waiter.response.error is not None:
            err = waiter.response.error
            raise PluginCallFailed(
                f"plugin {self.spec.name} {method} failed: {err.get('message', '')}",
                details={
                    "plugin": self.spec.name,
                    "method": method,
                    "code": err.get("code"),
                    "data": err.get("data"),
                },
            )
        return waiter.response.result

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        buffer = LineBuffer(self.spec.max_line_bytes)
        failure: ApplianceError
        try:
            while True:
                data = await self.process.stdout.receive_some(65_536)
                if not data:
                    failure = PluginCrashed(f"plugin {self.spec.name} exited")
                    break
                for line in buffer.feed(data):
                    self._dispatch(parse_message(line))
        except PluginProtocolError as exc:
            failure = exc
            log.warning("plugin_protocol_error", plugin=self.spec.name, error=exc.message)
            with contextlib.suppress(OSError):
                self.process.kill()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            failure = PluginCrashed(f"plugin {self.spec.name} exited")
        self._fail_all(failure)

    def _dispatch(self, msg: RpcResponse | RpcNotification) -> None:
        if isinstance(msg, RpcNotification):
            if len(self.notifications) < 256:
                self.notifications.append(msg)
            return
        waiter = self._waiters.get(msg.id)
        if waiter is None:
            log.info("plugin_late_response_dropped", plugin=self.spec.name, id=msg.id)
            return
        waiter.response = msg
        waiter.event.set()

    def _fail_all(self, failure: ApplianceError) -> None:
        self._dead = failure
        for waiter in self._waiters.values():
            if not waiter.event.is_set():
                waiter.failure = failure
                waiter.event.set()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        pending = b""
        window_start, logged, dropped = trio.current_time(), 0, 0
        limit = self.spec.stderr_line_chars
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await self.process.stderr.receive_some(65_536):
                self.stderr_tail = (self.stderr_tail + data)[-self.spec.stderr_tail_bytes :]
                *lines, pending = (pending + data).split(b"\n")
                if len(pending) > limit * 4:  # a runaway line without newline: log what we have
                    lines.append(pending)
                    pending = b""
                for raw in lines:
                    text = raw.decode("utf-8", "replace").rstrip()
                    if not text:
                        continue
                    now = trio.current_time()
                    if now - window_start >= 60.0:
                        if dropped:
                            log.warning("plugin_stderr_dropped", plugin=self.spec.name, lines=dropped)
                        window_start, logged, dropped = now, 0, 0
                    if logged >= self.spec.stderr_lines_per_min:
                        dropped += 1
                        continue
                    logged += 1
                    log.info("plugin_stderr", plugin=self.spec.name, pid=self.pid, line=text[:limit])
        if pending.strip():
            log.info(
                "plugin_stderr",
                plugin=self.spec.name,
                pid=self.pid,
                line=pending.decode("utf-8", "replace")[:limit],
            )
        if dropped:
            log.warning("plugin_stderr_dropped", plugin=self.spec.name, lines=dropped)


@contextlib.asynccontextmanager
async def open_plugin(spec: PluginSpec) -> AsyncIterator[PluginConnection]:
    """Start and handshake a plugin. Raises PluginRefused, PluginProtocolError, PluginTimeout, PluginCrashed."""
    try:
        process = await trio.lowlevel.open_process(
            list(spec.argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=spec.env,
            cwd=spec.cwd,
            start_new_session=True,  # its own process group: stopping it reaches whatever it forked
        )
    except OSError as exc:
        raise PluginCrashed(f"cannot start plugin {spec.name}: {exc}", details={"plugin": spec.name}) from exc
    conn = PluginConnection(spec, process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn._read_stdout)
            nursery.start_soon(conn._read_stderr)
            try:
                result = await conn._request(
                    "initialize",
                    {
                        "protocolVersion": max(SUPPORTED_VERSIONS),
                        "host": {"name": "appliance", "version": HOST_VERSION},
                        "grantedCapabilities": sorted(spec.granted),
                    },
                    spec.handshake_timeout_s,
                )
                conn.manifest = check_handshake(result, granted=spec.granted)
                log.info(
                    "plugin_started",
                    plugin=spec.name,
                    pid=conn.pid,
                    version=conn.manifest.version,
                    capabilities=sorted(conn.manifest.capabilities),
                )
                yield conn
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(conn)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from group


def _signal_group(process: trio.Process, signum: int) -> None:
    """Signal the plugin's process group (it leads its own session); quiet when nothing is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


async def _stop(conn: PluginConnection) -> None:
    """``shutdown`` (best effort), close stdin, wait; then SIGTERM, wait; then SIGKILL (whole group)."""
    process = conn.process
    if process.returncode is None and conn._dead is None:
        with contextlib.suppress(ApplianceError):
            await conn._request("shutdown", None, min(conn.spec.stop_timeout_s, 1.0))
    if process.stdin is not None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await process.stdin.aclose()
    with trio.move_on_after(conn.spec.stop_timeout_s):
        await process.wait()
    if process.returncode is None:
        log.info("plugin_terminating", plugin=conn.spec.name, pid=conn.pid)
        _signal_group(process, signal.SIGTERM)
        with trio.move_on_after(conn.spec.stop_timeout_s):
            await process.wait()
    if process.returncode is None:
        log.warning("plugin_killed", plugin=conn.spec.name, pid=conn.pid)
        _signal_group(process, signal.SIGKILL)
        await process.wait()
    _signal_group(process, signal.SIGKILL)  # helpers the plugin forked and left behind
    if process.returncode not in (0, None):
        log.warning(
            "plugin_exited",
            plugin=conn.spec.name,
            returncode=process.returncode,
            stderr_tail=conn.stderr_tail[-512:].decode("utf-8", "replace"),
        )


class SupervisorState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


class PluginSupervisor:
    """Keeps one plugin running; ``call`` waits (bounded) for a live connection."""

    def __init__(
        self,
        spec: PluginSpec,
        *,
        restart_base_s: float = 0.5,
        restart_cap_s: float = 30.0,
        rand: Callable[[], float] = random.random,
        max_restarts: int | None = None,
    ) -> None:
        self.spec = spec
        self.restarts = 0
        self.pids: list[int] = []
        self.state = SupervisorState.STARTING
        self.last_error: str | None = None
        self._backoff = Backoff(restart_base_s, restart_cap_s, 0.5, rand)
        self._max_restarts = max_restarts
        self._conn: PluginConnection | None = None
        self._new_conn = trio.Event()

    @property
    def pid(self) -> int | None:
        """The running plugin's pid, None between runs."""
        conn = self._conn
        return conn.pid if conn is not None and conn.alive else None

    @property
    def manifest(self) -> PluginManifest | None:
        conn = self._conn
        return conn.manifest if conn is not None else None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ``task_status.started()`` after the first successful handshake.

        Raises PluginRefused at once, and the last failure once ``max_restarts`` is exceeded."""
        try:
            await self._run(task_status)
        except ApplianceError as exc:
            self.state = SupervisorState.FAILED
            self.last_error = exc.message
            raise
        finally:
            if self.state is not SupervisorState.FAILED:
                self.state = SupervisorState.STOPPED

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        started = False
        while True:
            crashed_after_ready = False
            try:
                async with open_plugin(self.spec) as conn:
                    self._conn = conn
                    self.pids.append(conn.pid)
                    self.state = SupervisorState.RUNNING
                    self._new_conn.set()
                    self._new_conn = trio.Event()
                    if not started:
                        started = True
                        task_status.started()
                    await conn.process.wait()
                    crashed_after_ready = True
                    self.last_error = f"exited with code {conn.process.returncode}"
                    log.warning("plugin_crashed", plugin=self.spec.name, returncode=conn.process.returncode)
            except (PluginCrashed, PluginTimeout, PluginProtocolError) as exc:
                if (
                    isinstance(exc, PluginProtocolError)
                    and not isinstance(exc, PluginCrashed)
                    and not started
                ):
                    raise
                self.last_error = exc.message
                log.warning("plugin_failed", plugin=self.spec.name, error=exc.message)
                if self._max_restarts is not None and self.restarts >= self._max_restarts:
                    raise
            finally:
                self._conn = None
            self.state = SupervisorState.RESTARTING
            if crashed_after_ready:
                self._backoff.reset()
            self.restarts += 1
            delay = self._backoff.next_delay()
            log.info(
                "plugin_restart_scheduled",
                plugin=self.spec.name,
                restart=self.restarts,
                retry_in_s=round(delay, 3),
            )
            await trio.sleep(delay)

    async def call(self, method: str, params: Any = None, *, timeout_s: float | None = None) -> Any:
        """Like PluginConnection.call, waiting up to the call timeout for a (re)started plugin."""
        timeout = timeout_s or self.spec.call_timeout_s
        conn: PluginConnection | None = None
        with trio.move_on_after(timeout):
            while (conn := self._conn) is None or not conn.alive:
                await self._new_conn.wait()
        if conn is None or not conn.alive:
            raise PluginCrashed(f"plugin {self.spec.name} is not running", details={"plugin": self.spec.name})
        return await conn.call(method, params, timeout_s=timeout)


def python_plugin_argv(script: str, *args: str) -> Sequence[str]:
    """argv for a Python plugin script run with this interpreter (tests, samples)."""
    import sys

    return (sys.executable, "-u", script, *args)
