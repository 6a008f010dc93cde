"""Attrs models that cross a boundary (wire frames, sessions, tasks, ...).

Import the module you need (``appliance.models.frames``, ``appliance.models.sessions``): this package
imports none of them, so loading one model does not load the others.
"""

from __future__ import annotations

__all__: list[str] = []
