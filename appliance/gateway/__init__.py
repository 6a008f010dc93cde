"""The OpenClaw-compatible gateway: protocol core (sans-IO), method table, trio server shell, HTTP.

Public API (imported lazily so that loading the sans-IO core does not load trio)::

    GatewayServer, serve_gateway     appliance.gateway.server
    GatewayState                     appliance.gateway.state
    SessionFanout                    appliance.gateway.fanout (reach it as ``state.fanout``)
    MethodContext, MethodTable, Scope appliance.gateway.dispatch
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GatewayServer",
    "GatewayState",
    "MethodContext",
    "MethodTable",
    "Scope",
    "SessionFanout",
    "serve_gateway",
]


def __getattr__(name: str) -> Any:
    if name in ("GatewayServer", "serve_gateway"):
        from appliance.gateway import server

        return getattr(server, name)
    if name == "GatewayState":
        from appliance.gateway.state import GatewayState

        return GatewayState
    if name == "SessionFanout":
        from appliance.gateway.fanout import SessionFanout

        return SessionFanout
    if name in ("MethodContext", "MethodTable", "Scope"):
        from appliance.gateway import dispatch

        return getattr(dispatch, name)
    raise AttributeError(f"module 'appliance.gateway' has no attribute {name!r}")
