"""The ``/tool`` parser and guardrails, plugin tool names and arguments (sans-IO)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.agent.tools import (
    MAX_ARG_CHARS,
    MAX_PLUGIN_TOOL_NAME,
    REGISTRY,
    PluginToolCall,
    ToolCall,
    ToolName,
    ToolRefusal,
    parse_tool_command,
    plugin_arguments,
    plugin_tool_name,
    split_plugin_tool_name,
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
    assert result is None or isinstance(result, ToolCall | PluginToolCall | ToolRefusal)
    if isinstance(result, ToolCall | PluginToolCall):
        assert not any(ord(c) < 32 and c != "\t" for c in result.args)


# -- plugin tools -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/tool plugin_kit__echo", PluginToolCall("kit", "echo", "")),
        ('/tool plugin_kit__echo {"text": "hi"} ', PluginToolCall("kit", "echo", '{"text": "hi"}')),
        ("/tool plugin_my-kit__get_weather {}", PluginToolCall("my-kit", "get_weather", "{}")),
        # the name splits at the first "__": the rest is the tool's
        ("/tool plugin_kit__a__b", PluginToolCall("kit", "a__b", "")),
        ("/tool plugin_ab___t", PluginToolCall("ab_", "t", "")),
    ],
)
def test_plugin_tool_commands(text: str, expected: PluginToolCall) -> None:
    assert parse_tool_command(text) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("/tool plugin_kit", "invalid_name"),
        ("/tool plugin_kit__", "invalid_name"),
        ("/tool plugin___echo", "invalid_name"),
        ("/tool plugin_Kit__echo", "invalid_name"),
        ("/tool plugin_kit__Echo", "invalid_name"),
        ("/tool plugin_kit__ech.o", "invalid_name"),
        ("/tool plugin_kit__" + "e" * 60, "invalid_name"),  # longer than 64 in all
        ("/tool plugin_kit__echo [1]", "bad_args"),
        ("/tool plugin_kit__echo hi", "bad_args"),
        ('/tool plugin_kit__echo {"a": 1', "bad_args"),
        ("/tool plugin_kit__echo " + "[" * 100_000, "args_too_long"),
        ('/tool plugin_kit__echo {"a": "\n"}', "control_chars"),
        ("/tool plugin_kit__echo\x1b {}", "invalid_name"),
    ],
)
def test_plugin_tool_guardrails(text: str, code: str) -> None:
    result = parse_tool_command(text)
    assert isinstance(result, ToolRefusal)
    assert result.code == code
    assert result.message.startswith("tool error:")


def test_plugin_names_round_trip_only_when_unambiguous() -> None:
    assert split_plugin_tool_name(plugin_tool_name("kit", "echo")) == ("kit", "echo")
    assert split_plugin_tool_name(plugin_tool_name("a__b", "c")) != ("a__b", "c")  # such a plugin offers none
    assert split_plugin_tool_name("plugin_" + "k" * 32 + "__t") == ("k" * 32, "t")
    assert split_plugin_tool_name("plugin_" + "k" * 33 + "__t") is None
    assert split_plugin_tool_name("time_now") is None
    assert len(plugin_tool_name("k" * 32, "t" * 23)) == MAX_PLUGIN_TOOL_NAME
    assert split_plugin_tool_name(plugin_tool_name("k" * 32, "t" * 24)) is None


def test_plugin_arguments() -> None:
    assert plugin_arguments("") == {}
    assert plugin_arguments("  ") == {}
    assert plugin_arguments('{"text": "hi"}') == {"text": "hi"}
    assert "JSON object" in str(plugin_arguments("[1]"))
    assert "not valid JSON" in str(plugin_arguments("{"))
    assert "nested too deeply" in str(plugin_arguments("[" * 100_000 + "]" * 100_000))


@given(st.text(max_size=80))
def test_plugin_parser_never_raises(tail: str) -> None:
    result = parse_tool_command("/tool plugin_" + tail)
    assert isinstance(result, PluginToolCall | ToolRefusal)
    if isinstance(result, PluginToolCall):
        assert isinstance(plugin_arguments(result.args), dict)
        assert split_plugin_tool_name(result.name) == (result.plugin, result.tool)
