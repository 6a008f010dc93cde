"""The gateway's method table, assembled from static imports (PyInstaller sees every module)."""

from __future__ import annotations

from appliance.gateway.dispatch import MethodTable

__all__ = ["build_method_table"]


def build_method_table() -> MethodTable:
    from appliance.gateway.methods import sessions, system, usage

    table = MethodTable()
    for part in (system.table, sessions.table, usage.table):
        table.merge(part)
    return table
