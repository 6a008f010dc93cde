"""The tools of the running ``kind = "tools"`` plugins, for the agent (trio shell over the fleet).

Rules:
- the listing follows the fleet: a plugin's tools are listed (``tools.list``) once per plugin *process*
  (cached by pid), so a restarted plugin is listed again on first use; a plugin that is not running
  (restarting, failed, stopped) offers no tools; a failed listing is logged and counts as "no tools"
  until that process is replaced;
- :meth:`PluginToolset.call_tool` answers at once with a clear error when the plugin is not running or
  does not list the tool (the model cannot call what it was not offered), else calls ``tools.call``
  bounded by ``plugins.call_timeout_s``. Every failure is an :class:`~appliance.errors.ApplianceError`
  (the agent turns it into a tool result): a slow, crashed or babbling plugin never fails the turn;
- the fleet is resolved on every use (``serve`` registers it when the channels open, which may be after
  the agent started).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from appliance.errors import ApplianceError
from appliance.log import get_logger
from appliance.plugins.host import SupervisorState
from appliance.plugins.manifest import PluginKind
from appliance.plugins.rpc import PluginCrashed
from appliance.plugins.tool_wire import (
    PluginTool,
    PluginToolResult,
    PluginToolUnknown,
    parse_tool_list,
    parse_tool_result,
    tool_call_params,
)

if TYPE_CHECKING:
    from appliance.plugins.fleet import PluginFleet

__all__ = ["PluginToolset"]

log = get_logger("appliance.plugins")


class PluginToolset:
    """The tools plugins of the fleet ``resolve()`` returns (None: no fleet, no plugin tools)."""

    def __init__(self, resolve: Callable[[], PluginFleet | None], *, call_timeout_s: float) -> None:
        self._resolve = resolve
        self.call_timeout_s = call_timeout_s
        self._listed: dict[str, tuple[int, tuple[PluginTool, ...]]] = {}
        self._locks: dict[str, trio.Lock] = {}

    def _running_pid(self, fleet: PluginFleet, name: str) -> int | None:
        sup = fleet.supervisors.get(name)
        if sup is None or name in fleet.errors or sup.state is not SupervisorState.RUNNING:
            return None
        return sup.pid

    def _tool_plugins(self, fleet: PluginFleet) -> list[str]:
        return [n for n, d in fleet.definitions.items() if d.kind is PluginKind.TOOLS]

    async def list_tools(self) -> list[PluginTool]:
        """Every tool of every running tools plugin, in plugin order. Never raises."""
        fleet = self._resolve()
        if fleet is None:
            return []
        out: list[PluginTool] = []
        for name in self._tool_plugins(fleet):
            out.extend(await self._tools_of(fleet, name))
        return out

    async def _tools_of(self, fleet: PluginFleet, name: str) -> tuple[PluginTool, ...]:
        lock = self._locks.setdefault(name, trio.Lock())
        async with lock:  # concurrent turns list a fresh process once
            pid = self._running_pid(fleet, name)
            if pid is None:
                return ()
            cached = self._listed.get(name)
            if cached is not None and cached[0] == pid:
                return cached[1]
            tools: tuple[PluginTool, ...] = ()
            if "tools.list" not in fleet.definitions[name].capabilities:
                log.warning("plugin_tools_not_granted", plugin=name, capability="tools.list")
            else:
                try:
                    result = await fleet.supervisors[name].call(
                        "tools.list", {}, timeout_s=self.call_timeout_s
                    )
                    listing = parse_tool_list(name, result)
                except ApplianceError as exc:
                    log.warning("plugin_tools_list_failed", plugin=name, pid=pid, error=exc.message)
                else:
                    tools = listing.tools
                    for why in listing.skipped:
                        log.warning("plugin_tool_skipped", plugin=name, reason=why)
                    log.info("plugin_tools_listed", plugin=name, pid=pid, tools=[t.name for t in tools])
            self._listed[name] = (pid, tools)
            return tools

    async def call_tool(self, plugin: str, tool: str, arguments: dict[str, Any]) -> PluginToolResult:
        """Call ``plugin``'s ``tool``. Raises PluginToolUnknown (no such plugin or tool), PluginCrashed
        (not running, or died during the call), PluginTimeout, PluginCallFailed, PluginProtocolError."""
        fleet = self._resolve()
        if fleet is None or plugin not in self._tool_plugins(fleet):
            raise PluginToolUnknown(
                f"no tools plugin named {plugin!r} is enabled", details={"plugin": plugin}
            )
        if self._running_pid(fleet, plugin) is None:
            sup = fleet.supervisors[plugin]
            if plugin in fleet.errors or sup.state is SupervisorState.FAILED:
                why = fleet.errors.get(plugin, sup.last_error)
                raise PluginCrashed(f"plugin {plugin} is disabled: {why}", details={"plugin": plugin})
            last = f" (last error: {sup.last_error})" if sup.last_error else ""
            raise PluginCrashed(
                f"plugin {plugin} is not running{last}; it is restarted automatically, try again shortly",
                details={"plugin": plugin, "state": str(sup.state)},
            )
        tools = await self._tools_of(fleet, plugin)
        if tool not in {t.name for t in tools}:
            known = ", ".join(t.name for t in tools) or "none"
            raise PluginToolUnknown(
                f"plugin {plugin} has no tool {tool!r} (it has: {known})",
                details={"plugin": plugin, "tool": tool},
            )
        started = trio.current_time()
        try:
            raw = await fleet.supervisors[plugin].call(
                "tools.call", tool_call_params(tool, arguments), timeout_s=self.call_timeout_s
            )
            result = parse_tool_result(plugin, raw)
        except ApplianceError as exc:
            log.warning("plugin_tool_failed", plugin=plugin, tool=tool, error=exc.message)
            raise
        log.info(
            "plugin_tool_called",
            plugin=plugin,
            tool=tool,
            is_error=result.is_error,
            chars=len(result.content),
            duration_ms=round((trio.current_time() - started) * 1000, 3),
        )
        return result
