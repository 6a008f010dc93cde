"""The gateway's method table, assembled from static imports (PyInstaller sees every module)."""

from __future__ import annotations

from appliance.gateway.dispatch import MethodTable, Scope

__all__ = ["CRON_SCOPES", "build_method_table"]

#: cron.* load the scheduler on first call (see MethodTable.merge_deferred); tests pin these to cron.table
CRON_SCOPES: dict[str, Scope] = {
    "cron.status": Scope.READ,
    "cron.list": Scope.READ,
    "cron.get": Scope.READ,
    "cron.add": Scope.ADMIN,
    "cron.update": Scope.ADMIN,
    "cron.remove": Scope.ADMIN,
    "cron.run": Scope.ADMIN,
    "cron.runs": Scope.READ,
}


def _cron_table() -> MethodTable:
    from appliance.gateway.methods import cron

    return cron.table


def build_method_table() -> MethodTable:
    from appliance.gateway.methods import chat, sessions, system, usage

    table = MethodTable()
    for part in (system.table, sessions.table, usage.table, chat.table):
        table.merge(part)
    table.merge_deferred(CRON_SCOPES, _cron_table)
    return table
