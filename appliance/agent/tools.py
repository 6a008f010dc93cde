"""The deterministic ``/tool`` path: parsing, guardrails and the registry (sans-IO).

Rules:
- a message is a tool command only when it starts with the exact prefix ``/tool `` (slash, lower-case
  ``tool``, one space); ``/tool`` alone or ``/Tool x`` is not one (it goes to the model, or gets the
  "no model configured" reply) -- no fuzzy matching, so ordinary text never runs a tool by accident;
- the name matches ``[a-z_][a-z0-9_]{0,31}`` and must be in the registry, or it is a plugin tool's
  name ``plugin_<plugin>__<tool>`` (see :func:`plugin_tool_name`: at most :data:`MAX_PLUGIN_TOOL_NAME`
  characters of ``a-z 0-9 _ -``, split at the first ``__``; the ``plugin_`` prefix is reserved for
  plugins, so no built-in can collide); whether that plugin and tool exist is the toolbox's question
  (the fleet changes while the appliance runs), so the parser answers :class:`PluginToolCall`;
- a plugin tool's argument text is empty or one JSON object (:func:`plugin_arguments`);
- the argument text is at most :data:`MAX_ARG_CHARS` characters and holds no control characters
  (tab is allowed; newline, NUL, ESC, DEL and the C1 range are not);
- every violation is a :class:`ToolRefusal` with a clear message, never an exception.
The registry is sorted by name; executing a tool is the shell's job (``loop.py``).
"""

from __future__ import annotations

import enum
import json
import re

import attrs

__all__ = [
    "MAX_ARG_CHARS",
    "MAX_PLUGIN_TOOL_NAME",
    "PLUGIN_TOOL_PREFIX",
    "REGISTRY",
    "TOOL_PREFIX",
    "PluginToolCall",
    "ToolCall",
    "ToolName",
    "ToolRefusal",
    "ToolSpec",
    "parse_tool_command",
    "plugin_arguments",
    "plugin_tool_name",
    "split_plugin_tool_name",
    "tool_names",
]

TOOL_PREFIX = "/tool "
MAX_ARG_CHARS = 4096
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,31}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
PLUGIN_TOOL_PREFIX = "plugin_"
#: the longest function name OpenAI-compatible providers accept
MAX_PLUGIN_TOOL_NAME = 64
# plugin part: a plugin name without "__" (non-greedy: the name splits at the first "__")
_PLUGIN_TOOL = re.compile(r"plugin_([a-z0-9][a-z0-9_-]{0,31}?)__([a-z0-9][a-z0-9_-]*)")


class ToolName(enum.StrEnum):
    EXEC = "exec"
    MODEL_INFO = "model_info"
    SESSION_TAIL = "session_tail"
    TIME_NOW = "time_now"


@attrs.frozen
class ToolSpec:
    name: ToolName
    description: str
    #: JSON schema of the arguments offered to the model (function calling)
    parameters: dict[str, object] = attrs.field(factory=dict, hash=False)


REGISTRY: tuple[ToolSpec, ...] = tuple(
    sorted(
        (
            ToolSpec(
                ToolName.EXEC,
                "Run a shell command in the sandbox (checked by the defender first).",
                {
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                },
            ),
            ToolSpec(
                ToolName.MODEL_INFO, "Which model provider and model this agent uses.", {"type": "object"}
            ),
            ToolSpec(
                ToolName.SESSION_TAIL,
                "The last messages of this session (default 5, at most 50).",
                {"type": "object", "properties": {"count": {"type": "integer"}}},
            ),
            ToolSpec(ToolName.TIME_NOW, "The current time (UTC, ISO 8601 and epoch ms).", {"type": "object"}),
        ),
        key=lambda s: str(s.name),
    )
)
_BY_NAME = {str(s.name): s for s in REGISTRY}


def tool_names() -> list[str]:
    return [str(s.name) for s in REGISTRY]


@attrs.frozen
class ToolCall:
    name: ToolName
    args: str = ""


@attrs.frozen
class PluginToolCall:
    """``/tool plugin_<plugin>__<tool> {json}`` (or a model's call to it); ``args`` is the checked text."""

    plugin: str
    tool: str
    args: str = ""

    @property
    def name(self) -> str:
        return plugin_tool_name(self.plugin, self.tool)


def plugin_tool_name(plugin: str, tool: str) -> str:
    """The agent-side name of ``plugin``'s ``tool``; callers check it with :func:`split_plugin_tool_name`
    (a plugin name holding ``__`` or a tool name outside the rule cannot round-trip)."""
    return f"{PLUGIN_TOOL_PREFIX}{plugin}__{tool}"


def split_plugin_tool_name(name: str) -> tuple[str, str] | None:
    """``(plugin, tool)`` for a valid plugin tool name, else None."""
    if len(name) > MAX_PLUGIN_TOOL_NAME:
        return None
    m = _PLUGIN_TOOL.fullmatch(name)
    return (m.group(1), m.group(2)) if m else None


def plugin_arguments(text: str) -> dict[str, object] | str:
    """A plugin tool's arguments: ``{}`` for empty text, else one JSON object; a string says what is wrong."""
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"arguments are not valid JSON ({exc.msg} at character {exc.pos})"
    except RecursionError:
        return "arguments are nested too deeply"
    if not isinstance(doc, dict):
        return f"arguments must be a JSON object, not {type(doc).__name__}"
    return doc


@attrs.frozen
class ToolRefusal:
    """A ``/tool`` message that broke a guardrail; ``message`` is what the user sees."""

    message: str
    code: str


def parse_tool_command(text: str) -> ToolCall | PluginToolCall | ToolRefusal | None:
    """``None`` when ``text`` is not a tool command; else the call or why it was refused."""
    if not text.startswith(TOOL_PREFIX):
        return None
    rest = text[len(TOOL_PREFIX) :]
    name, _, args = rest.partition(" ")
    if name.startswith(PLUGIN_TOOL_PREFIX):
        return _parse_plugin_command(name, args, rest)
    if not _NAME.fullmatch(name):
        return ToolRefusal("tool error: invalid tool name (expected [a-z_][a-z0-9_]{0,31})", "invalid_name")
    spec = _BY_NAME.get(name)
    if spec is None:
        return ToolRefusal(
            f"tool error: unknown tool {name!r} (known: {', '.join(tool_names())})", "unknown_tool"
        )
    if len(args) > MAX_ARG_CHARS:
        return ToolRefusal(f"tool error: arguments longer than {MAX_ARG_CHARS} characters", "args_too_long")
    if _CONTROL.search(rest):
        return ToolRefusal(
            "tool error: control characters are not allowed in a tool command", "control_chars"
        )
    return ToolCall(spec.name, args.strip())


def _parse_plugin_command(name: str, args: str, rest: str) -> PluginToolCall | ToolRefusal:
    split = split_plugin_tool_name(name)
    if split is None:
        return ToolRefusal(
            "tool error: invalid plugin tool name (expected plugin_<plugin>__<tool>, "
            f"at most {MAX_PLUGIN_TOOL_NAME} characters of a-z 0-9 _ -)",
            "invalid_name",
        )
    if len(args) > MAX_ARG_CHARS:
        return ToolRefusal(f"tool error: arguments longer than {MAX_ARG_CHARS} characters", "args_too_long")
    if _CONTROL.search(rest):
        return ToolRefusal(
            "tool error: control characters are not allowed in a tool command", "control_chars"
        )
    checked = plugin_arguments(args)
    if isinstance(checked, str):
        return ToolRefusal(f"tool error: {name}: {checked}", "bad_args")
    return PluginToolCall(split[0], split[1], args.strip())
