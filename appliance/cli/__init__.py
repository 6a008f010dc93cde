"""Command-line interface: ``appliance serve | doctor | status | version``."""

from __future__ import annotations

__all__: list[str] = []
