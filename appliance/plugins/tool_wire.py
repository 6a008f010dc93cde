"""The ``tools`` plugin contract, sans-IO: what ``tools.list`` and ``tools.call`` carry.

Shaped after MCP's ``tools/list`` and ``tools/call`` (same field names where they overlap), on the
plugin JSON-RPC of :mod:`appliance.plugins.rpc`:

- ``tools.list`` (no params) answers ``{"tools": [{name, description, inputSchema}]}`` (MCP's shape)
  or the bare list; ``parameters`` is accepted for ``inputSchema`` (OpenAI's word). The schema is a
  JSON-schema object (default ``{"type": "object"}``);
- ``tools.call`` with ``{"name": str, "arguments": {...}}`` answers ``{"content": str, "isError": bool}``;
  MCP's content list (``[{"type": "text", "text": ...}, ...]``) is accepted too, its text parts joined
  and any other part shown as ``[<type> content omitted]``. ``isError: true`` is a tool-level failure
  the model sees; a JSON-RPC error is a failed call.

Rules:
- a tool name is 1-48 of ``a-z 0-9 _ -`` starting with a letter or digit; at most :data:`MAX_TOOLS`
  tools per plugin; a description is cut at :data:`MAX_DESCRIPTION` characters and a schema over
  :data:`MAX_SCHEMA_CHARS` (as JSON) is refused. A bad *entry* is skipped (named in
  :attr:`ToolListing.skipped`), a bad *answer* raises :class:`PluginProtocolError`, so one sloppy tool
  does not hide the plugin's others;
- everything from a plugin (names, descriptions, schemas, results) is untrusted: the agent wraps results
  in the defender's boundary markers before a model sees them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from appliance.errors import InvalidRequest
from appliance.plugins.manifest import TOOL_METHODS
from appliance.plugins.rpc import PluginProtocolError

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_SCHEMA_CHARS",
    "MAX_TOOLS",
    "TOOL_METHODS",
    "PluginTool",
    "PluginToolResult",
    "PluginToolUnknown",
    "ToolListing",
    "parse_tool_list",
    "parse_tool_result",
    "tool_call_params",
]

MAX_TOOLS = 64
MAX_DESCRIPTION = 1024
MAX_SCHEMA_CHARS = 16_384
_TOOL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")


class PluginToolUnknown(InvalidRequest):
    """A call named a plugin or tool the running fleet does not offer."""


@attrs.frozen
class PluginTool:
    """One tool a plugin offers; ``parameters`` is its JSON schema (offered to the model as is)."""

    plugin: str
    name: str
    description: str = ""
    parameters: dict[str, Any] = attrs.field(factory=lambda: {"type": "object"}, hash=False)


@attrs.frozen
class ToolListing:
    tools: tuple[PluginTool, ...] = ()
    #: ``"<name or #index>: why"`` for every entry that was left out
    skipped: tuple[str, ...] = ()


@attrs.frozen
class PluginToolResult:
    content: str
    is_error: bool = False


def _entry(plugin: str, raw: object, index: int) -> PluginTool | str:
    if not isinstance(raw, dict):
        return f"#{index}: not an object"
    name = raw.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        return f"#{index}: name {name!r} is not 1-48 of a-z 0-9 _ - (starting with a letter or digit)"
    description = raw.get("description", "")
    if not isinstance(description, str):
        return f"{name}: description is not a string"
    schema = raw.get("inputSchema", raw.get("parameters", {"type": "object"}))
    if not isinstance(schema, dict):
        return f"{name}: inputSchema is not an object"
    if schema.get("type", "object") != "object":
        return f"{name}: inputSchema must have type object"
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        return f"{name}: inputSchema is larger than {MAX_SCHEMA_CHARS} characters"
    return PluginTool(plugin, name, description[:MAX_DESCRIPTION], {"type": "object", **schema})


def parse_tool_list(plugin: str, result: object) -> ToolListing:
    """Check a ``tools.list`` answer. Raises PluginProtocolError when it is not a list of tools."""
    raw = result.get("tools") if isinstance(result, dict) else result
    if not isinstance(raw, list):
        raise PluginProtocolError(
            f"plugin {plugin} answered tools.list with no list of tools", details={"plugin": plugin}
        )
    tools: list[PluginTool] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        entry = _entry(plugin, item, index)
        if isinstance(entry, str):
            skipped.append(entry)
        elif entry.name in seen:
            skipped.append(f"{entry.name}: listed twice")
        elif len(tools) >= MAX_TOOLS:
            skipped.append(f"{entry.name}: more than {MAX_TOOLS} tools")
        else:
            seen.add(entry.name)
            tools.append(entry)
    return ToolListing(tuple(tools), tuple(skipped))


def tool_call_params(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The ``tools.call`` params (MCP's ``{name, arguments}``)."""
    return {"name": name, "arguments": arguments}


def _content_text(content: object) -> str | None:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    parts = []
    for part in content:
        if (
            isinstance(part, dict)
            and part.get("type", "text") == "text"
            and isinstance(part.get("text"), str)
        ):
            parts.append(part["text"])
        elif isinstance(part, dict):
            parts.append(f"[{part.get('type', 'unknown')} content omitted]")
        else:
            return None
    return "\n".join(parts)


def parse_tool_result(plugin: str, result: object) -> PluginToolResult:
    """Check a ``tools.call`` answer. Raises PluginProtocolError when it has no text content."""
    if isinstance(result, dict):
        text = _content_text(result.get("content"))
        is_error = result.get("isError", False)
        if text is not None and isinstance(is_error, bool):
            return PluginToolResult(text, is_error)
    raise PluginProtocolError(
        f"plugin {plugin} answered tools.call without text content (expected {{content, isError?}})",
        details={"plugin": plugin},
    )
