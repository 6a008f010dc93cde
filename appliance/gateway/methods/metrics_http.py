"""``GET /metrics``: the gateway's own figures as Prometheus text, mounted with ``add_http_route``.

Rules: a request with a valid ``Authorization: Bearer <gateway token>`` is served from anywhere; without
one it is served only to a loopback peer (``allow_loopback``, on by default: a local scraper or the
operator's ``curl``), anything else gets 401 as the gateway's other HTTP paths do. Only ``GET``/``HEAD``.
The figures are the stats document's (:mod:`appliance.monitor.stats`) built from ``/proc/self``, the
store's files and the gateway state; nothing here blocks on a peer or holds a secret.

Mount it in ``serve``: ``server.add_http_route("/metrics", metrics_route(state))``.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from appliance.gateway import http as http_core
from appliance.gateway.protocol import tokens_match
from appliance.gateway.state import GatewayState
from appliance.log import get_logger
from appliance.monitor import (
    CONTENT_TYPE,
    Metric,
    build_stats,
    clock_ticks,
    file_sizes,
    metrics_from_stats,
    read_host_sample,
    read_process_sample,
    render_metrics,
)

__all__ = ["gateway_stats", "is_loopback_peer", "metrics_route"]

log = get_logger("appliance.gateway.metrics")

MetricsHandler = Callable[[trio.abc.Stream, http_core.HttpRequest, bytes], Awaitable[int]]


def is_loopback_peer(stream: trio.abc.Stream) -> bool:
    try:
        host = stream.socket.getpeername()[0]  # type: ignore[attr-defined]
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except (OSError, ValueError, AttributeError, IndexError):
        return False


def _database_path(state: GatewayState) -> Path:
    path = getattr(state.db, "path", None)
    if path is not None:
        return Path(str(path))
    return Path(os.path.expanduser(state.settings.data_dir)) / "appliance.sqlite3"


def _session_count(state: GatewayState) -> int | None:
    from appliance.gateway.methods.system import load_session_queries

    queries = load_session_queries()
    if queries is None or state.db is None:
        return None
    try:
        return int(queries.count_sessions(state.db))
    except Exception as exc:  # store busy or closed: leave the figure out, say why in the log
        log.warning("metrics_sessions_failed", exc_type=type(exc).__name__, error=str(exc))
        return None


def gateway_stats(state: GatewayState) -> dict[str, Any]:
    """The stats document of this very process (same shape as ``appliance stats --json``)."""
    me = read_process_sample(os.getpid())
    database = _database_path(state)
    host = read_host_sample(database.parent if database.parent.exists() else "/")
    doc = build_stats(
        now_s=time.time(),
        seconds=0.0,
        proc_prev=me,
        proc_cur=me,
        host_prev=host,
        host_cur=host,
        files=file_sizes(database),
        run_state={"pid": me.pid},
        status=None,
        ready={
            "ready": not state.shutting_down,
            "uptimeMs": state.uptime_ms(),
            "eventLoop": state.event_loop.to_wire(),
        },
        clk_tck=clock_ticks(),
    )
    gateway = doc["gateway"]
    gateway["activeRequests"] = state.active_requests
    gateway["connections"] = len(state.broadcasters)
    sessions = _session_count(state)
    if sessions is not None:
        gateway["sessions"] = sessions
    return doc


def _authorized(
    stream: trio.abc.Stream, request: http_core.HttpRequest, token: str, allow_loopback: bool
) -> bool:
    presented = http_core.bearer_token(request)
    if presented is not None and token and tokens_match(presented, token):
        return True
    return allow_loopback and is_loopback_peer(stream)


def metrics_route(state: GatewayState, *, allow_loopback: bool = True) -> MetricsHandler:
    """An ``add_http_route`` handler serving ``/metrics`` (see the module rules)."""

    async def handle(stream: trio.abc.Stream, request: http_core.HttpRequest, body: bytes) -> int:
        token = state.settings.gateway.token
        if state.settings.gateway.auth == "none":
            token = ""
        if not _authorized(stream, request, token, allow_loopback):
            response = http_core.HttpResponse(
                401,
                b'{"error":{"message":"Unauthorized","type":"unauthorized"}}',
                headers=(("WWW-Authenticate", "Bearer"),),
            )
        elif request.method not in ("GET", "HEAD"):
            response = http_core.HttpResponse(405, b"", headers=(("Allow", "GET, HEAD"),))
        else:
            metrics = metrics_from_stats(gateway_stats(state))
            metrics.append(
                Metric("appliance_info", "gauge", "Build information.", 1.0, (("version", state.version),))
            )
            response = http_core.HttpResponse(200, render_metrics(metrics).encode(), CONTENT_TYPE)
        with trio.move_on_after(5):
            await stream.send_all(http_core.render(response, head_only=request.method == "HEAD"))
        return response.status

    return handle
