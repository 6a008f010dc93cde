"""The agent: turns from a message to a reply (tool path, model path), providers and turn records.

Import from here; modules behind are private to the component. The provider client (httpx) loads only
when a provider is configured.
"""

from __future__ import annotations

from appliance.agent.gate import LocalTurnGate, QueueTurnGate, TurnGate
from appliance.agent.loop import (
    AgentRuntime,
    ChatProvider,
    EventSink,
    TurnOutcome,
    TurnRequest,
    no_model_reply,
)
from appliance.agent.providers.wire import Completion, ToolCallRequest, Usage
from appliance.agent.toolbox import ExecOutput, ModelInfo, PluginToolSource, Toolbox, ToolFailed
from appliance.agent.tools import (
    REGISTRY,
    PluginToolCall,
    ToolCall,
    ToolName,
    ToolRefusal,
    parse_tool_command,
    tool_names,
)
from appliance.agent.turns import FAILED_BEFORE_REPLY, TurnPath, TurnRecord, TurnStatus

__all__ = [
    "FAILED_BEFORE_REPLY",
    "REGISTRY",
    "AgentRuntime",
    "ChatProvider",
    "Completion",
    "EventSink",
    "ExecOutput",
    "LocalTurnGate",
    "ModelInfo",
    "PluginToolCall",
    "PluginToolSource",
    "QueueTurnGate",
    "ToolCall",
    "ToolCallRequest",
    "ToolFailed",
    "ToolName",
    "ToolRefusal",
    "Toolbox",
    "TurnGate",
    "TurnOutcome",
    "TurnPath",
    "TurnRecord",
    "TurnRequest",
    "TurnStatus",
    "Usage",
    "no_model_reply",
    "parse_tool_command",
    "tool_names",
]
