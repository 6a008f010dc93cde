"""Plugin sidecars: JSON-RPC 2.0 over stdio to a process in any language (``rpc`` is the sans-IO
protocol and handshake, ``manifest`` the sans-IO ``plugin.toml`` parser, ``host`` the trio shell and
supervisor, ``fleet`` the enabled plugins of a running appliance and their health)."""

from __future__ import annotations

from appliance.plugins.fleet import (
    DoctorRow,
    PluginFleet,
    doctor_rows,
    fleet_for,
    load_definitions,
    plugins_dir,
    plugins_health,
    plugins_status,
    register_fleet,
)
from appliance.plugins.host import (
    PluginConnection,
    PluginSpec,
    PluginSupervisor,
    SupervisorState,
    open_plugin,
    python_plugin_argv,
)
from appliance.plugins.manifest import (
    CHANNEL_METHODS,
    MANIFEST_FILE,
    ChannelOptions,
    PluginDefinition,
    PluginKind,
    PluginManifestError,
    parse_manifest,
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
    "CHANNEL_METHODS",
    "MANIFEST_FILE",
    "SUPPORTED_VERSIONS",
    "ChannelOptions",
    "DoctorRow",
    "LineBuffer",
    "PluginCallFailed",
    "PluginCapabilityDenied",
    "PluginConnection",
    "PluginCrashed",
    "PluginDefinition",
    "PluginFleet",
    "PluginKind",
    "PluginManifest",
    "PluginManifestError",
    "PluginOutputTooLarge",
    "PluginProtocolError",
    "PluginRefused",
    "PluginSpec",
    "PluginSupervisor",
    "PluginTimeout",
    "SupervisorState",
    "check_handshake",
    "doctor_rows",
    "fleet_for",
    "load_definitions",
    "open_plugin",
    "parse_manifest",
    "plugins_dir",
    "plugins_health",
    "plugins_status",
    "python_plugin_argv",
    "register_fleet",
]
