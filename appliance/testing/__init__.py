"""Test helpers we own and ship (fakes, launchers), so tests, benchmarks and soak share one copy."""

from __future__ import annotations

__all__: list[str] = []
