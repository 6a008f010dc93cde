"""Shared state of a running gateway: settings, store, identity, clocks, broadcast fan-out.

Created once by ``serve`` and handed to every method handler through
:class:`~appliance.gateway.dispatch.MethodContext`. Clocks are injectable so tests can pin time.

Session events (``chat``/``agent`` of runs, ``session.message``, ``sessions.changed``) go through
``fanout`` (:class:`~appliance.gateway.fanout.SessionFanout`), which picks recipients from the
subscriptions and then calls :meth:`GatewayState.broadcast` with ``conn_ids``.

Broadcasting: every authenticated WebSocket registers an :class:`EventSink` in ``broadcasters`` (by
conn id). :meth:`GatewayState.broadcast` serialises the payload once and hands it to each sink, which
applies the event's scope guard, numbers it with its own ``seq`` and queues it without blocking (a slow
client is closed with 1008 "slow consumer", or skips the event when ``drop_if_slow``). ``broadcast`` is
synchronous and never waits on a peer: call it from anywhere in the trio thread.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from appliance import __version__
from appliance.config.settings import Settings
from appliance.gateway.fanout import SessionFanout

if TYPE_CHECKING:
    from appliance.store import Database

__all__ = ["EncodedEvent", "EventLoopStats", "EventSink", "GatewayState"]


def _wall_ms() -> int:
    return int(time.time() * 1000)


@attrs.frozen
class EncodedEvent:
    """An event's name, payload and stateVersion, each already JSON text (shared by every recipient)."""

    event_json: str
    payload_json: str
    state_version_json: str | None = None

    @classmethod
    def of(cls, event: str, payload: Any, state_version: Mapping[str, int] | None = None) -> EncodedEvent:
        """Raises TypeError/ValueError when ``payload`` is not JSON (a caller bug)."""
        dump = _dumps
        return cls(dump(event), dump(payload), None if state_version is None else dump(dict(state_version)))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class EventSink(Protocol):
    """One connection's end of a broadcast."""

    def deliver(self, event: str, encoded: EncodedEvent, *, drop_if_slow: bool = False) -> None: ...


@attrs.define
class EventLoopStats:
    """Event-loop delay and CPU use, sampled by the server about every ``interval_ms`` (values come in).

    Shaped as OpenClaw's ``eventLoop`` block: ``delayP99Ms``/``delayMaxMs`` are how late the sampling
    timer fired; ``utilization`` is the loop thread's CPU share (the loop is busy when its thread runs);
    ``cpuCoreRatio`` the whole process's, in cores; ``degraded`` while p99 delay exceeds
    ``degraded_delay_ms``.
    """

    interval_ms: int = 1_000
    degraded_delay_ms: float = 1_000.0
    delays: deque[float] = attrs.Factory(lambda: deque(maxlen=60))
    measured_interval_ms: float = 0.0
    main_thread_ratio: float = 0.0
    process_ratio: float = 0.0
    host_utilization: float | None = None
    degraded_since_ms: int | None = None
    cores: int = attrs.Factory(lambda: os.cpu_count() or 1)

    def record(
        self,
        *,
        delay_ms: float,
        interval_ms: float,
        main_thread_ratio: float,
        process_ratio: float,
        host_utilization: float | None,
        now_ms: int,
    ) -> None:
        self.delays.append(max(0.0, delay_ms))
        self.measured_interval_ms = max(0.0, interval_ms)
        self.main_thread_ratio = max(0.0, main_thread_ratio)
        self.process_ratio = max(0.0, process_ratio)
        self.host_utilization = host_utilization
        degraded = self.p99() > self.degraded_delay_ms
        if degraded and self.degraded_since_ms is None:
            self.degraded_since_ms = now_ms
        elif not degraded:
            self.degraded_since_ms = None

    def p99(self) -> float:
        if not self.delays:
            return 0.0
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def to_wire(self) -> dict[str, Any]:
        degraded = self.degraded_since_ms is not None
        main = round(self.main_thread_ratio, 3)
        process = round(self.process_ratio, 3)
        return {
            "degraded": degraded,
            "degradedSinceMs": self.degraded_since_ms,
            "reasons": ["event_loop_delay"] if degraded else [],
            "intervalMs": round(self.measured_interval_ms or float(self.interval_ms), 3),
            "delayP99Ms": round(self.p99(), 1),
            "delayMaxMs": round(max(self.delays, default=0.0), 1),
            "utilization": min(1.0, main),
            "cpuCoreRatio": process,
            "cpuBreakdown": {
                "mainThreadCoreRatio": main,
                "hostUtilization": None if self.host_utilization is None else round(self.host_utilization, 3),
                "hostCpuCount": self.cores,
                "workerCoreRatio": 0,
                "otherThreadsCoreRatio": round(max(0.0, process - main), 3),
            },
        }


@attrs.define
class GatewayState:
    settings: Settings
    db: Database
    version: str = __version__
    boot_id: str = attrs.Factory(lambda: str(uuid.uuid4()))
    started_monotonic: float = attrs.Factory(time.monotonic)
    wall_ms: Callable[[], int] = _wall_ms
    monotonic: Callable[[], float] = time.monotonic
    #: authenticated connections by conn id (see module docstring)
    broadcasters: dict[str, EventSink] = attrs.Factory(dict)
    health_version: int = 0
    presence_version: int = 1
    #: the last ``health`` payload (the hello-ok snapshot reuses it)
    health_cache: dict[str, Any] | None = None
    #: monotonic time of the last ``health`` broadcast to every connection
    health_broadcast_at: float | None = None
    #: non-CLI clients currently connected, by conn id (``system-presence`` lists them after the gateway)
    presence: dict[str, dict[str, Any]] = attrs.Factory(dict)
    #: the last heartbeat run (``last-heartbeat``); None until one has run
    last_heartbeat: dict[str, Any] | None = None
    event_loop: EventLoopStats = attrs.Factory(EventLoopStats)
    hostname: str = attrs.Factory(socket.gethostname)
    #: set when graceful shutdown begins (``/ready`` turns 503)
    shutting_down: bool = False
    #: requests being handled right now, over every connection (``status.shutdownBudget``)
    active_requests: int = 0
    #: the work services (run queue, agent runtime, scheduler) that ``serve`` starts when needed; tests
    #: that build a bare state leave it None and the chat methods fall back to a local runtime
    services: Any = None
    #: the last host-integrity report (``status.integrity``); None when no baseline exists
    integrity: dict[str, Any] | None = None
    #: set by the services while they run
    run_queue: Any = None
    scheduler: Any = None
    #: subscriptions and session-event publishing (``sessions.subscribe``, ``sessions.messages.subscribe``,
    #: runs from any source); see :mod:`appliance.gateway.fanout`
    fanout: SessionFanout = attrs.field(
        default=attrs.Factory(SessionFanout, takes_self=True), eq=False, repr=False
    )

    async def ensure_services(self) -> None:
        """Start the work services if ``serve`` provided them (first use), and wait until they run."""
        if self.services is not None:
            await self.services.ready()

    def uptime_ms(self) -> int:
        return int((self.monotonic() - self.started_monotonic) * 1000)

    def state_version(self) -> dict[str, int]:
        return {"presence": self.presence_version, "health": self.health_version}

    def broadcast(
        self,
        event: str,
        payload: Any,
        *,
        drop_if_slow: bool = False,
        state_version: Mapping[str, int] | None = None,
        conn_ids: Iterable[str] | None = None,
    ) -> int:
        """Send ``event`` to every authenticated connection allowed to see it (or only ``conn_ids``).

        Returns how many sinks it was handed to. Raises TypeError/ValueError when ``payload`` is not JSON.
        """
        if not self.broadcasters:
            return 0
        encoded = EncodedEvent.of(event, payload, state_version)
        targets = (
            list(self.broadcasters.values())
            if conn_ids is None
            else [s for c in conn_ids if (s := self.broadcasters.get(c)) is not None]
        )
        for sink in targets:
            sink.deliver(event, encoded, drop_if_slow=drop_if_slow)
        return len(targets)
