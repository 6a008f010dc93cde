"""System methods: ``health``, ``status``, ``system-presence``, ``last-heartbeat``; plus the hello-ok snapshot.

Rules:
- shapes follow OpenClaw 2026.9.6 (``shared/specs/openclaw-gateway.md`` §2.1) so ``openclaw health`` and
  ``openclaw gateway call status`` print the same things against this gateway;
- ``health`` refreshes ``state.health_cache``, bumps ``state.health_version`` and pushes a ``health``
  event (with ``stateVersion``, drop-if-slow) before its response, as the real gateway does: to the
  caller always, to every other connection at most once per ``HEALTH_BROADCAST_INTERVAL_S``;
- session numbers come from the store through exactly two functions, ``count_sessions(db) -> int`` and
  ``recent_sessions(db, limit) -> list[dict]`` (``appliance.store.queries.sessions``), loaded lazily by
  :func:`load_session_queries`; a store failure degrades ``sessions`` to ``count: 0`` and is logged,
  never failing ``health``;
- ``status`` shows the store path only to ``operator.admin`` callers, as the real gateway redacts it;
- ``configReload.hotReloadStatus`` is ``"off"``: this gateway does not hot-reload its config, and the
  CLI reads ``"disabled"`` as a failure ("watcher retries exhausted").
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Protocol

from appliance.gateway.dispatch import MethodContext, MethodTable, Scope, check_params
from appliance.log import get_logger

if TYPE_CHECKING:
    from appliance.gateway.state import GatewayState

__all__ = [
    "DEFAULT_AGENT_ID",
    "SessionQueries",
    "build_health",
    "build_snapshot",
    "load_session_queries",
    "presence_entries",
    "session_defaults",
    "table",
]

log = get_logger("appliance.gateway.system")

table = MethodTable()

DEFAULT_AGENT_ID = "main"
MAIN_KEY = "main"
RECENT_SESSIONS = 5


class SessionQueries(Protocol):
    """The two store queries ``health`` needs (``appliance.store.queries.sessions`` provides them)."""

    def count_sessions(self, db: Any) -> int: ...

    def recent_sessions(self, db: Any, limit: int = 5) -> list[dict[str, Any]]: ...


def load_session_queries() -> SessionQueries | None:
    """The store's session queries, imported on first use (tests replace this function)."""
    try:
        from appliance.store.queries import sessions as queries
    except ImportError:  # a build without the store: health still answers
        return None
    return queries


def session_defaults(state: GatewayState | None = None) -> dict[str, Any]:
    """``hello-ok.snapshot.sessionDefaults``."""
    return {
        "defaultAgentId": DEFAULT_AGENT_ID,
        "modelConfigured": bool(state is not None and state.settings.agent.model),
        "ownership": "sole",
        "selectionRequired": False,
        "mainKey": MAIN_KEY,
        "mainSessionKey": f"agent:{DEFAULT_AGENT_ID}:{MAIN_KEY}",
        "scope": "per-sender",
    }


def _database_path(state: GatewayState) -> str:
    path = getattr(state.db, "path", None)
    if path is not None:
        return str(path)
    data_dir = os.path.expanduser(state.settings.data_dir)
    return os.path.join(data_dir, "appliance.sqlite3")


def _sessions_summary(state: GatewayState, now_ms: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"path": _database_path(state), "count": 0, "recent": []}
    queries = load_session_queries()
    if queries is None or state.db is None:
        return summary
    try:
        summary["count"] = int(queries.count_sessions(state.db))
        recent = []
        for row in queries.recent_sessions(state.db, RECENT_SESSIONS):
            item = {"key": row.get("key")}
            updated = row.get("updatedAt")
            if isinstance(updated, int | float):
                item["updatedAt"] = int(updated)
                item["age"] = max(0, now_ms - int(updated))
            recent.append(item)
        summary["recent"] = recent
    except Exception as exc:  # the store is down or busy: report what we can, log why
        log.warning("health_sessions_failed", exc_type=type(exc).__name__, error=str(exc))
    return summary


def _heartbeat_config() -> dict[str, Any]:
    """This appliance runs no periodic agent heartbeat (the scheduler owns timed runs)."""
    return {
        "enabled": False,
        "every": "0m",
        "everyMs": 0,
        "prompt": "",
        "target": "none",
        "ackMaxChars": 0,
    }


def _plugins_health(state: GatewayState) -> dict[str, Any]:
    """``health.plugins`` from the plugin fleet ``serve`` started (appliance.plugins is imported only
    when a plugin is enabled)."""
    if not state.settings.plugins.enabled:
        return {"loaded": [], "errors": [], "unavailable": []}
    from appliance.plugins import plugins_health

    return plugins_health(state)


def _plugins_status(state: GatewayState) -> dict[str, Any]:
    """``degradedPlugins`` and the ``plugins`` extension (per-plugin state, pid, restarts, last error)."""
    if not state.settings.plugins.enabled:
        return {"degradedPlugins": [], "plugins": []}
    from appliance.plugins import plugins_status

    return plugins_status(state)


def build_health(state: GatewayState, *, started: float | None = None) -> dict[str, Any]:
    """The ``health`` payload (pure but for the store read)."""
    t0 = started if started is not None else state.monotonic()
    now_ms = state.wall_ms()
    sessions = _sessions_summary(state, now_ms)
    return {
        "ok": True,
        "ts": now_ms,
        "durationMs": max(0, int((state.monotonic() - t0) * 1000)),
        "plugins": _plugins_health(state),
        "configReload": {"hotReloadStatus": "off"},
        "channels": {},
        "channelOrder": [],
        "channelLabels": {},
        "heartbeatSeconds": 0,
        "defaultAgentId": DEFAULT_AGENT_ID,
        "agents": [
            {
                "agentId": DEFAULT_AGENT_ID,
                "isDefault": True,
                "heartbeat": _heartbeat_config(),
                "sessions": sessions,
            }
        ],
        "sessions": sessions,
        "modelRuntime": {"degraded": False, "pendingAgents": []},
        "eventLoop": state.event_loop.to_wire(),
    }


def refresh_health(state: GatewayState, *, started: float | None = None) -> dict[str, Any]:
    """Build health, cache it and bump its state version (no broadcast)."""
    payload = build_health(state, started=started)
    state.health_cache = payload
    state.health_version += 1
    return payload


def presence_entries(state: GatewayState) -> list[dict[str, Any]]:
    """``system-presence``: the gateway itself first, then connected non-CLI clients."""
    now_ms = state.wall_ms()
    host = state.hostname
    self_entry = {
        "host": host,
        "version": state.version,
        "platform": _platform(),
        "deviceFamily": "Linux" if sys.platform.startswith("linux") else sys.platform,
        "mode": "gateway",
        "reason": "self",
        "instanceId": state.boot_id,
        "text": f"Gateway: {host} · app {state.version} · mode gateway · reason self",
        "ts": now_ms,
    }
    return [self_entry, *state.presence.values()]


def _platform() -> str:
    """``linux 6.1.0-18-arm64``, as OpenClaw reports ``os.platform() + " " + os.release()``."""
    try:
        return f"{sys.platform} {os.uname().release}"
    except AttributeError:  # not POSIX
        return sys.platform


def build_snapshot(state: GatewayState) -> dict[str, Any]:
    """``hello-ok.snapshot``: presence, (cached) health, state versions, uptime, session defaults."""
    health = state.health_cache if state.health_cache is not None else refresh_health(state)
    return {
        "suspension": {"phase": "accepting"},
        "presence": presence_entries(state),
        "health": health,
        "stateVersion": state.state_version(),
        "uptimeMs": state.uptime_ms(),
        "sessionDefaults": session_defaults(state),
    }


# ------------------------------------------------------------------------------------------------ methods


#: other connections get at most one ``health`` broadcast per this many seconds (the caller always
#: gets its own): with N clients polling health, broadcasting every refresh to everyone is O(N²) frames.
#: OpenClaw coalesces concurrent refreshes into one broadcast for the same reason.
HEALTH_BROADCAST_INTERVAL_S = 1.0


@table.method("health", scope=Scope.READ)
async def health(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    check_params("health", params, {"probe": bool})
    state = ctx.state
    now = state.monotonic()
    payload = refresh_health(state, started=now)
    version = state.state_version()
    last = state.health_broadcast_at
    if last is None or now - last >= HEALTH_BROADCAST_INTERVAL_S:
        state.health_broadcast_at = now
        state.broadcast("health", payload, drop_if_slow=True, state_version=version)
    else:
        state.broadcast("health", payload, drop_if_slow=True, state_version=version, conn_ids=(ctx.conn_id,))
    return payload


@table.method("status", scope=Scope.READ)
async def status(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """OpenClaw's ``status`` shape; the store path is shown to ``operator.admin`` only (others get
    ``paths: []`` and ``[redacted]``, as the real gateway answers a read-scoped CLI)."""
    check_params("status", params, {"deep": bool, "all": bool, "usage": bool})
    state = ctx.state
    now_ms = state.wall_ms()
    sessions = _sessions_summary(state, now_ms)
    path = sessions["path"] if ctx.is_admin() else "[redacted]"
    heartbeat = _heartbeat_config()
    return {
        "runtimeVersion": state.version,
        "hostDesktop": {"enabled": False, "state": "disabled"},
        "heartbeat": {
            "defaultAgentId": DEFAULT_AGENT_ID,
            "agents": [
                {
                    "agentId": DEFAULT_AGENT_ID,
                    "enabled": heartbeat["enabled"],
                    "every": heartbeat["every"],
                    "everyMs": heartbeat["everyMs"],
                }
            ],
        },
        "channelSummary": [],
        "queuedSystemEvents": [],
        "degradedSecretOwners": [],
        **_plugins_status(state),  # degradedPlugins, plus plugins (per-sidecar details, an extension)
        "tasks": {
            "total": 0,
            "active": 0,
            "terminal": 0,
            "failures": 0,
            "byStatus": dict.fromkeys(
                ("queued", "running", "succeeded", "failed", "timed_out", "cancelled", "lost"), 0
            ),
            "byRuntime": dict.fromkeys(("subagent", "acp", "cli", "cron"), 0),
        },
        "taskAudit": {
            "total": 0,
            "warnings": 0,
            "errors": 0,
            "byCode": dict.fromkeys(
                (
                    "stale_queued",
                    "stale_running",
                    "lost",
                    "delivery_failed",
                    "missing_cleanup",
                    "inconsistent_timestamps",
                ),
                0,
            ),
        },
        "sessions": {
            "paths": [path] if ctx.is_admin() else [],
            "count": sessions["count"],
            "defaults": {"model": state.settings.agent.model or None, "contextTokens": None},
            "recent": sessions["recent"],
            "byAgent": [
                {
                    "agentId": DEFAULT_AGENT_ID,
                    "path": path,
                    "count": sessions["count"],
                    "recent": sessions["recent"],
                }
            ],
        },
        "modelRuntime": {"degraded": False, "pendingAgents": []},
        "eventLoop": state.event_loop.to_wire(),
        "processMemory": _process_memory(),
        "workerPools": {},
        "pid": os.getpid(),
        "shutdownBudget": {
            "timeoutMs": int(state.settings.gateway.shutdown_grace_s * 1000),
            "reserveMs": 0,
            "nativeStopBudget": False,
            "activeWork": {"rootRequests": state.active_requests},
            "writeCustody": [],
        },
        # appliance extensions (OpenClaw clients ignore unknown keys)
        "queue": _queue_state(state),
        "integrity": state.integrity,
    }


def _queue_state(state: GatewayState) -> dict[str, Any]:
    """The run queue's lanes and gate while the work services run; ``active: false`` before first use."""
    queue = getattr(state, "run_queue", None)
    if queue is None:
        return {"active": False}
    return {"active": True, **queue.snapshot().to_wire()}


@table.method("system-presence", scope=Scope.READ)
async def system_presence(ctx: MethodContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    check_params("system-presence", params, {})
    return presence_entries(ctx.state)


@table.method("last-heartbeat", scope=Scope.READ)
async def last_heartbeat(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any] | None:
    check_params("last-heartbeat", params, {})
    return ctx.state.last_heartbeat


def _process_memory() -> dict[str, int]:
    """RSS and its peak from /proc (Linux); zeros elsewhere."""
    out = {"rssBytes": 0, "peakRssBytes": 0}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    out["rssBytes"] = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    out["peakRssBytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out
