"""Plugin sidecars: JSON-RPC 2.0 over stdio to a process in any language (``rpc`` is the sans-IO
protocol and handshake, ``manifest`` the sans-IO ``plugin.toml`` parser, ``host`` the trio shell and
supervisor, ``fleet`` the enabled plugins of a running appliance and their health, ``tool_wire`` the
sans-IO ``tools`` contract and ``toolset`` the agent's view of the running tools plugins).

Two kinds of plugin, by the methods the host calls after ``initialize``:

- ``kind = "channel"``: ``channel.poll {timeoutMs}`` -> ``[{chatId, senderId, text, messageId, ...}]``,
  ``channel.ack {messageId}``, ``channel.send {chatId, text}`` -> ``{messageId}``;
- ``kind = "tools"`` (MCP's ``tools/list`` and ``tools/call``, renamed to dotted capabilities):
  ``tools.list`` -> ``{"tools": [{name, description, inputSchema}]}`` (or the bare list; ``parameters``
  is accepted for ``inputSchema``) and ``tools.call {name, arguments}`` -> ``{content, isError?}``
  (``content`` a string, or MCP's ``[{"type": "text", "text"}]``). The agent offers each tool as
  ``plugin_<plugin>__<tool>``, beside the built-ins: to the model (function calling) and on the
  ``/tool plugin_<plugin>__<tool> {json args}`` path. A call is bounded by ``plugins.call_timeout_s``,
  its text capped at ``agent.output_cap_bytes``, and wrapped as untrusted data before a model reads
  it; a plugin that is down or fails answers a tool error, never a failed turn. The listing is taken
  once per plugin process, so a restarted plugin is listed again and a stopped one offers nothing.
"""

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
    TOOL_METHODS,
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
from appliance.plugins.tool_wire import (
    PluginTool,
    PluginToolResult,
    PluginToolUnknown,
    ToolListing,
    parse_tool_list,
    parse_tool_result,
)
from appliance.plugins.toolset import PluginToolset

__all__ = [
    "CHANNEL_METHODS",
    "MANIFEST_FILE",
    "SUPPORTED_VERSIONS",
    "TOOL_METHODS",
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
    "PluginTool",
    "PluginToolResult",
    "PluginToolUnknown",
    "PluginToolset",
    "SupervisorState",
    "ToolListing",
    "check_handshake",
    "doctor_rows",
    "fleet_for",
    "load_definitions",
    "open_plugin",
    "parse_manifest",
    "parse_tool_list",
    "parse_tool_result",
    "plugins_dir",
    "plugins_health",
    "plugins_status",
    "python_plugin_argv",
    "register_fleet",
]
