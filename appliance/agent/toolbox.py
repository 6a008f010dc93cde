"""Running the registry's tools (the shell behind :mod:`appliance.agent.tools`).

Rules:
- every tool answers text; a tool that cannot run raises :class:`ToolFailed` with a message meant for
  the user (it becomes the turn's clear tool error, never a crash);
- ``exec`` goes through the defender first (``CommandChecker``; BLOCK and REVIEW both refuse: there is no
  one to approve a review on this path), then through the sandbox (``ExecRunner``); with
  ``sandbox.backend = "none"`` it answers "sandbox not configured";
- output is capped at ``output_cap_bytes`` (UTF-8), marked when cut;
- plugin tools (``plugin_<plugin>__<tool>``) come from a :class:`PluginToolSource` (the running fleet's
  ``tools`` plugins, see :mod:`appliance.plugins.toolset`): listed for the model on every model turn
  (cheap: cached per plugin process), called with JSON-object arguments. Any failure -- no such tool,
  plugin down, timeout, crash mid-call, ``isError`` -- is a ToolFailed; no defender check on the way
  in (the arguments run no shell here: the plugin is the operator's own code with its own grant), and
  the result is untrusted data on the way out (the loop wraps it before a model reads it).
The defender and sandbox come in as two small callables so tests and the bench can swap them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from appliance.agent.prompt import message_text
from appliance.agent.tools import (
    PluginToolCall,
    ToolName,
    plugin_arguments,
    plugin_tool_name,
    split_plugin_tool_name,
)
from appliance.errors import ApplianceError
from appliance.store import Database, get_session, tail_messages

if TYPE_CHECKING:
    from appliance.config.settings import Settings
    from appliance.sandbox.service import SandboxService

__all__ = [
    "CommandChecker",
    "ExecOutput",
    "ExecRunner",
    "ModelInfo",
    "PluginToolSource",
    "ToolFailed",
    "Toolbox",
    "cap_text",
]


class ToolFailed(ApplianceError):
    """A tool could not run; ``message`` is shown to the user as the tool error."""


@attrs.frozen
class ExecOutput:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False


#: (command, session key) -> None when allowed, else the refusal reason
CommandChecker = Callable[[str, str], Awaitable[str | None]]
#: (command, group) -> output
ExecRunner = Callable[[str, str], Awaitable[ExecOutput]]


class PluginToolInfo(Protocol):
    @property
    def plugin(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def parameters(self) -> Mapping[str, Any]: ...


class PluginToolReply(Protocol):
    @property
    def content(self) -> str: ...
    @property
    def is_error(self) -> bool: ...


class PluginToolSource(Protocol):
    """What the agent needs of the plugin fleet (``appliance.plugins.PluginToolset``)."""

    async def list_tools(self) -> Sequence[PluginToolInfo]:
        """Never raises."""
        ...

    async def call_tool(self, plugin: str, tool: str, arguments: dict[str, Any]) -> PluginToolReply:
        """Raises ApplianceError for every failure."""
        ...


@attrs.frozen
class ModelInfo:
    provider: str | None
    base_url: str
    models: tuple[str, ...]


def cap_text(text: str, cap_bytes: int) -> str:
    raw = text.encode()
    if len(raw) <= cap_bytes:
        return text
    return raw[:cap_bytes].decode("utf-8", "ignore") + f"\n[output truncated at {cap_bytes} bytes]"


@attrs.define
class Toolbox:
    db: Database
    wall_ms: Callable[[], int]
    model_info: ModelInfo
    output_cap_bytes: int = 65_536
    sandbox_backend: str = "none"
    check_command: CommandChecker | None = None
    run_exec: ExecRunner | None = None
    plugins: PluginToolSource | None = None

    async def plugin_schemas(self) -> list[dict[str, Any]]:
        """Function-calling schemas of the plugin tools offered right now (none without plugins)."""
        if self.plugins is None:
            return []
        schemas = []
        for tool in await self.plugins.list_tools():
            name = plugin_tool_name(tool.plugin, tool.name)
            if split_plugin_tool_name(name) != (tool.plugin, tool.name):
                continue  # a plugin name with "__", or too long a name: it could not be called back
            description = f"[plugin {tool.plugin}] {tool.description}".strip()
            schemas.append(
                {
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": description,
                        "parameters": dict(tool.parameters),
                    },
                }
            )
        return schemas

    async def run_plugin(self, call: PluginToolCall) -> str:
        """Run one plugin tool. Raises ToolFailed (shown to the user, or handed back to the model)."""
        arguments = plugin_arguments(call.args)
        if isinstance(arguments, str):
            raise ToolFailed(f"tool error: {call.name}: {arguments}")
        if self.plugins is None:
            raise ToolFailed(f"tool error: {call.name}: no plugins are enabled (plugins.enabled)")
        try:
            reply = await self.plugins.call_tool(call.plugin, call.tool, arguments)
        except ApplianceError as exc:
            raise ToolFailed(f"tool error: {call.name}: {exc.message}", details=exc.details) from exc
        text = cap_text(reply.content, self.output_cap_bytes)
        if reply.is_error:
            raise ToolFailed(f"tool error: {call.name}: {text}")
        return text

    async def run(self, name: ToolName, args: str, *, session_key: str) -> str:
        """Run one tool. Raises ToolFailed (shown to the user)."""
        if name is ToolName.TIME_NOW:
            now = self.wall_ms()
            iso = dt.datetime.fromtimestamp(now / 1000, dt.UTC).isoformat(timespec="milliseconds")
            return f"{iso.replace('+00:00', 'Z')} (epoch ms {now})"
        if name is ToolName.MODEL_INFO:
            info = self.model_info
            if info.provider is None:
                return "no model configured (agent.provider_base_url is empty); /tool commands still work"
            return f"provider: {info.provider}; base URL: {info.base_url}; models: {', '.join(info.models)}"
        if name is ToolName.SESSION_TAIL:
            return self._session_tail(args, session_key)
        return cap_text(await self._exec(args, session_key), self.output_cap_bytes)

    def _session_tail(self, args: str, session_key: str) -> str:
        count = 5
        if args:
            if not args.isdigit():
                raise ToolFailed("tool error: session_tail takes one number (how many messages, 1-50)")
            count = max(1, min(50, int(args)))
        rec = get_session(self.db, session_key)
        if rec is None:
            return "(no messages)"
        lines = [
            f"{m.role}: {message_text(m.content)}"
            for m in tail_messages(self.db, session_key, rec.session_id, count)
        ]
        return cap_text("\n".join(lines) or "(no messages)", self.output_cap_bytes)

    async def _exec(self, args: str, session_key: str) -> str:
        command = args
        if command.startswith("{"):  # the model's function-call arguments
            try:
                doc = json.loads(command)
            except ValueError:
                raise ToolFailed("tool error: exec arguments are not valid JSON") from None
            command = str(doc.get("command", "")) if isinstance(doc, dict) else ""
        if not command.strip():
            raise ToolFailed("tool error: exec needs a command")
        if self.sandbox_backend == "none" or self.run_exec is None:
            raise ToolFailed(
                "tool error: sandbox not configured (set sandbox.backend to podman or docker to use exec)"
            )
        if self.check_command is not None:
            refusal = await self.check_command(command, session_key)
            if refusal is not None:
                raise ToolFailed(f"tool error: command refused by the defender: {refusal}")
        group = session_key.split(":")[1] if session_key.startswith("agent:") else "main"
        out = await self.run_exec(command, group)
        parts = [out.stdout.rstrip("\n")]
        if out.stderr.strip():
            parts.append(f"[stderr]\n{out.stderr.rstrip()}")
        if out.timed_out:
            parts.append("[timed out]")
        parts.append(f"[exit {out.exit_code}]")
        return "\n".join(p for p in parts if p)


def defender_checker(settings: Settings) -> CommandChecker:
    """The defender's command check as a :data:`CommandChecker` (built on first use)."""
    from appliance.defender import FailMode, Mode, Verdict
    from appliance.defender.engine import Defender

    defender = Defender(
        mode=Mode(settings.defender.mode),
        fail_mode=FailMode(settings.defender.fail_mode),
        timeout_s=settings.defender.timeout_ms / 1000,
    )

    async def check(command: str, session_key: str) -> str | None:
        decision = await defender.check_command(command, session=session_key)
        if decision.verdict is Verdict.ALLOW:
            return None
        rules = ", ".join(r.rule for r in decision.reasons) or str(decision.verdict)
        return f"{decision.verdict} ({rules})"

    return check


def sandbox_runner(settings: Settings, service: SandboxService | None = None) -> ExecRunner:
    """``sh -c <command>`` in the sandbox ``[sandbox]`` configures.

    With ``service`` (the gateway's long-lived :class:`~appliance.sandbox.service.SandboxService`, which
    owns the engine connection and the warm pool) runs go through it; without, each call opens the
    sandbox for itself (exec outside the gateway's services: tests, one-shot tools).
    """

    async def run(command: str, group: str) -> ExecOutput:
        if service is not None:
            result = await service.run(group=group, argv=["sh", "-c", command])
        else:
            # from the submodule: the package __init__ exports lazily (PEP 562), which mypy cannot read
            from appliance.sandbox.service import open_sandbox_service

            async with open_sandbox_service(settings, warm_pool=False) as once:
                result = await once.run(group=group, argv=["sh", "-c", command])
        return ExecOutput(
            result.exit_code,
            result.stdout.decode("utf-8", "replace"),
            result.stderr.decode("utf-8", "replace"),
            result.timed_out,
        )

    return run
