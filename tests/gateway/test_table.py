"""The assembled method table: deferred modules are declared with the same names and scopes they have."""

from __future__ import annotations

import sys

import pytest

from appliance.gateway.dispatch import MethodTable
from appliance.gateway.table import CRON_SCOPES, SESSIONS_SCOPES, USAGE_SCOPES, build_method_table


def _real(module: str) -> MethodTable:
    __import__(f"appliance.gateway.methods.{module}")
    table: MethodTable = sys.modules[f"appliance.gateway.methods.{module}"].table
    return table


@pytest.mark.parametrize(
    ("module", "declared"), [("sessions", SESSIONS_SCOPES), ("usage", USAGE_SCOPES), ("cron", CRON_SCOPES)]
)
def test_deferred_declarations_match_the_real_tables(module: str, declared: dict[str, object]) -> None:
    real = _real(module)
    assert {name: spec.scope for name, spec in real.methods.items()} == declared
    assert all(spec.advertised for spec in real.methods.values())
    table = build_method_table()
    assert all(table.methods[name].scope == scope for name, scope in declared.items())
    assert set(declared) <= set(table.advertised())


def test_every_method_is_registered_once_and_advertised() -> None:
    table = build_method_table()
    assert {"health", "status", "chat.send", "agent", "sessions.patch", "usage.cost", "cron.add"} <= set(
        table.advertised()
    )
