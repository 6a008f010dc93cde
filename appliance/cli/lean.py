"""Keep ``serve``'s idle memory small: defer modules it may never use, use built-in hashes.

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

__all__ = ["defer_module", "is_deferred", "lean_serve_imports"]

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


def lean_serve_imports() -> None:
    """Called by ``appliance serve`` before it imports anything else (measured by bench_gateway --exe).

    - ``ssl`` and ``idna``: trio imports both at module level; the gateway speaks plain ws on loopback
      (TLS clients load ssl on first use) and idna only encodes non-ASCII host names (~1.4 MB).
    - ``_hashlib``: blocked, so :mod:`hashlib` and :mod:`hmac` use CPython's built-in SHA-1/SHA-2/BLAKE2
      instead of mapping OpenSSL's libcrypto (~3.4 MB resident) for the WebSocket handshake's SHA-1,
      token comparison and ledger hashes. libcrypto still loads when a TLS client loads ssl. What serve
      loses: hashlib.scrypt/pbkdf2_hmac (used only by ``appliance artifact`` signing, a separate
      process) and speed on bulk hashing (sha256 249 vs 1681 MB/s on the build box: the integrity check
      of the whole bundle takes ~0.3 s instead of ~0.05 s).
    """
    if "hashlib" not in sys.modules:
        sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]  # None = "not importable"
    defer_module("ssl")
    defer_module("idna")
