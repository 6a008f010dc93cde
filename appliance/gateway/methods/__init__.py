"""Gateway method modules. Each exposes a module-level ``table`` (a :class:`MethodTable`);
:func:`appliance.gateway.table.build_method_table` merges them with static imports."""

from __future__ import annotations
