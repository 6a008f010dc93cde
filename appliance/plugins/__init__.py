"""Plugin sidecars: JSON-RPC 2.0 over stdio to a process in any language (``rpc`` is the sans-IO
protocol and handshake, ``host`` the trio shell and supervisor)."""

from __future__ import annotations

from appliance.plugins.host import (
    PluginConnection,
    PluginSpec,
    PluginSupervisor,
    open_plugin,
    python_plugin_argv,
)
from appliance.plugins.rpc import (
    SUPPORTED_VERSIONS,
    LineBuffer,
    PluginCallFailed,
    PluginCapabilityDenied,
    PluginCrashed,
    PluginManifest,
    PluginOutputTooLarge,
    PluginProtocolError,
    PluginRefused,
    PluginTimeout,
    check_handshake,
)

__all__ = [
    "SUPPORTED_VERSIONS",
    "LineBuffer",
    "PluginCallFailed",
    "PluginCapabilityDenied",
    "PluginConnection",
    "PluginCrashed",
    "PluginManifest",
    "PluginOutputTooLarge",
    "PluginProtocolError",
    "PluginRefused",
    "PluginSpec",
    "PluginSupervisor",
    "PluginTimeout",
    "check_handshake",
    "open_plugin",
    "python_plugin_argv",
]
