"""Fixtures of the OTA tests live in :mod:`tests.ota.rig`."""

from __future__ import annotations

from tests.ota.rig import artifacts, rig

__all__ = ["artifacts", "rig"]
