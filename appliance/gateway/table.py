"""The gateway's method table, assembled from static imports (PyInstaller sees every module).

``system``, ``chat`` and ``subscriptions`` (a few hundred bytes of handlers) load at start (health answers
first; chat imports its runtime lazily). The other
method modules register by name and load on their first call (:meth:`MethodTable.merge_deferred`): an idle
board keeps about a megabyte of its 35 MB budget. Their scopes are declared here; a test pins them to the
modules' own tables.
"""

from __future__ import annotations

from appliance.gateway.dispatch import MethodTable, Scope

__all__ = ["CRON_SCOPES", "SESSIONS_SCOPES", "USAGE_SCOPES", "build_method_table"]

R, W, A = Scope.READ, Scope.WRITE, Scope.ADMIN

SESSIONS_SCOPES: dict[str, Scope] = {
    "sessions.list": R,
    "sessions.preview": R,
    "sessions.resolve": R,
    "sessions.patch": W,
    "sessions.create": W,
    "sessions.describe": R,
    "sessions.reset": W,
    "sessions.delete": W,
    "sessions.compact": W,
    "sessions.history": R,
    "sessions.get": R,
    "session.status": R,
}
USAGE_SCOPES: dict[str, Scope] = {
    "usage.status": R,
    "usage.cost": R,
    "sessions.usage": R,
    "sessions.usage.timeseries": R,
    "sessions.usage.logs": R,
}
CRON_SCOPES: dict[str, Scope] = {
    "cron.status": R,
    "cron.list": R,
    "cron.get": R,
    "cron.add": A,
    "cron.update": A,
    "cron.remove": A,
    "cron.run": A,
    "cron.runs": R,
}


def _sessions_table() -> MethodTable:
    from appliance.gateway.methods import sessions

    return sessions.table


def _usage_table() -> MethodTable:
    from appliance.gateway.methods import usage

    return usage.table


def _cron_table() -> MethodTable:
    from appliance.gateway.methods import cron

    return cron.table


def build_method_table() -> MethodTable:
    from appliance.gateway.methods import chat, subscriptions, system

    table = MethodTable()
    for part in (system.table, chat.table, subscriptions.table):
        table.merge(part)
    table.merge_deferred(SESSIONS_SCOPES, _sessions_table)
    table.merge_deferred(USAGE_SCOPES, _usage_table)
    table.merge_deferred(CRON_SCOPES, _cron_table)
    return table
