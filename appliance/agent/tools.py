"""The deterministic ``/tool`` path: parsing, guardrails and the registry (sans-IO).

Rules:
- a message is a tool command only when it starts with the exact prefix ``/tool `` (slash, lower-case
  ``tool``, one space); ``/tool`` alone or ``/Tool x`` is not one (it goes to the model, or gets the
  "no model configured" reply) -- no fuzzy matching, so ordinary text never runs a tool by accident;
- the name matches ``[a-z_][a-z0-9_]{0,31}`` and must be in the registry;
- the argument text is at most :data:`MAX_ARG_CHARS` characters and holds no control characters
  (tab is allowed; newline, NUL, ESC, DEL and the C1 range are not);
- every violation is a :class:`ToolRefusal` with a clear message, never an exception.
The registry is sorted by name; executing a tool is the shell's job (``loop.py``).
"""

from __future__ import annotations

import enum
import re

import attrs

__all__ = [
    "MAX_ARG_CHARS",
    "REGISTRY",
    "TOOL_PREFIX",
    "ToolCall",
    "ToolName",
    "ToolRefusal",
    "ToolSpec",
    "parse_tool_command",
    "tool_names",
]

TOOL_PREFIX = "/tool "
MAX_ARG_CHARS = 4096
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,31}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


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
class ToolRefusal:
    """A ``/tool`` message that broke a guardrail; ``message`` is what the user sees."""

    message: str
    code: str


def parse_tool_command(text: str) -> ToolCall | ToolRefusal | None:
    """``None`` when ``text`` is not a tool command; else the call or why it was refused."""
    if not text.startswith(TOOL_PREFIX):
        return None
    rest = text[len(TOOL_PREFIX) :]
    name, _, args = rest.partition(" ")
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
