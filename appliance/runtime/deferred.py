"""Defer loading a stdlib module until something actually uses it.

Why: ``import trio`` imports :mod:`ssl` at module level (``trio._ssl``), which loads libssl and libcrypto
and costs ~5 MB of resident memory, yet the gateway serves plain WebSocket on loopback and only the
agent/channel HTTP clients (loaded on first use) need TLS. ``serve`` puts a placeholder module in
``sys.modules`` before trio is imported; the first attribute lookup on it imports the real module and
copies its namespace into the placeholder, so modules that bound the placeholder keep working.

``importlib.util.LazyLoader`` would be the stock tool, but on CPython 3.11 the ``import`` statement
itself reads ``__spec__`` of a module already in ``sys.modules`` and so triggers the load at once.
"""

from __future__ import annotations

import _thread
import importlib
import sys
import types
from typing import Any

__all__ = ["defer_module", "is_deferred"]

_load_lock = _thread.allocate_lock()


class _DeferredModule(types.ModuleType):
    """Stands in for a module; loads it on the first attribute that is not already here."""

    def __getattr__(self, attr: str) -> Any:
        real = _materialise(self)
        return getattr(real, attr)


def _materialise(placeholder: _DeferredModule) -> types.ModuleType:
    name = placeholder.__name__
    with _load_lock:
        current = sys.modules.get(name)
        if current is not None and current is not placeholder:
            real = current
        else:
            sys.modules.pop(name, None)
            try:
                real = importlib.import_module(name)
            except BaseException:
                sys.modules[name] = placeholder
                raise
        vars(placeholder).update(vars(real))
    return real


def defer_module(name: str) -> bool:
    """Install a placeholder for ``name`` unless it is already imported; True when one was installed."""
    if name in sys.modules:
        return False
    sys.modules[name] = _DeferredModule(name, f"deferred import of {name}")
    return True


def is_deferred(name: str) -> bool:
    """True while ``name`` is still the placeholder (nothing has used it yet)."""
    return isinstance(sys.modules.get(name), _DeferredModule)
