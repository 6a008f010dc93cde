"""The ``/tool`` parser and guardrails (sans-IO)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.agent.tools import (
    MAX_ARG_CHARS,
    REGISTRY,
    ToolCall,
    ToolName,
    ToolRefusal,
    parse_tool_command,
    tool_names,
)


def test_registry_is_sorted_and_complete() -> None:
    assert tool_names() == ["exec", "model_info", "session_tail", "time_now"]
    assert [str(s.name) for s in REGISTRY] == sorted(str(s.name) for s in REGISTRY)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/tool time_now", ToolCall(ToolName.TIME_NOW, "")),
        ("/tool session_tail 3", ToolCall(ToolName.SESSION_TAIL, "3")),
        ("/tool exec ls -la  ", ToolCall(ToolName.EXEC, "ls -la")),
        ("/tool exec a\tb", ToolCall(ToolName.EXEC, "a\tb")),
    ],
)
def test_valid_commands(text: str, expected: ToolCall) -> None:
    assert parse_tool_command(text) == expected


@pytest.mark.parametrize(
    "text", ["hello", "/tool", "/tools time_now", "/Tool time_now", " /tool time_now", "/tooltime_now"]
)
def test_not_a_tool_command(text: str) -> None:
    assert parse_tool_command(text) is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("/tool Time_now", "invalid_name"),
        ("/tool 9lives", "invalid_name"),
        ("/tool " + "a" * 33, "invalid_name"),
        ("/tool  time_now", "invalid_name"),
        ("/tool nope", "unknown_tool"),
        ("/tool exec ls\nrm -rf /", "control_chars"),
        ("/tool exec \x1b[31m", "control_chars"),
        ("/tool exec a\x00b", "control_chars"),
        ("/tool exec a\x85b", "control_chars"),
        ("/tool exec " + "x" * (MAX_ARG_CHARS + 1), "args_too_long"),
    ],
)
def test_guardrails_refuse_with_a_clear_error(text: str, code: str) -> None:
    result = parse_tool_command(text)
    assert isinstance(result, ToolRefusal)
    assert result.code == code
    assert result.message.startswith("tool error:")


@given(st.text(max_size=200))
def test_parser_never_raises(text: str) -> None:
    result = parse_tool_command(text)
    assert result is None or isinstance(result, ToolCall | ToolRefusal)
    if isinstance(result, ToolCall):
        assert not any(ord(c) < 32 and c != "\t" for c in result.args)
