"""The ``tools`` plugin contract (sans-IO): ``tools.list`` answers, ``tools.call`` answers, the default
grant of a tools plugin."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.plugins import (
    TOOL_METHODS,
    PluginProtocolError,
    PluginTool,
    PluginToolResult,
    parse_manifest,
    parse_tool_list,
    parse_tool_result,
)
from appliance.plugins.tool_wire import MAX_DESCRIPTION, MAX_TOOLS, tool_call_params

ECHO = {"name": "echo", "description": "Echo.", "inputSchema": {"type": "object", "properties": {}}}


def test_mcp_shape_and_bare_list_are_both_accepted() -> None:
    mcp = parse_tool_list("kit", {"tools": [ECHO]})
    bare = parse_tool_list("kit", [ECHO])
    assert mcp == bare
    assert mcp.tools == (PluginTool("kit", "echo", "Echo.", {"type": "object", "properties": {}}),)
    assert mcp.skipped == ()


def test_parameters_is_accepted_for_input_schema_and_the_default_is_an_object() -> None:
    listing = parse_tool_list(
        "kit",
        [
            {"name": "a", "parameters": {"properties": {"x": {"type": "string"}}}},
            {"name": "b"},
        ],
    )
    a, b = listing.tools
    assert a.parameters == {"type": "object", "properties": {"x": {"type": "string"}}}
    assert b.parameters == {"type": "object"}
    assert b.description == ""


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("echo", "#0: not an object"),
        ({"name": "Bad Name"}, "#0: name 'Bad Name' is not"),
        ({"name": "x" * 49}, "is not 1-48"),
        ({"name": ""}, "is not 1-48"),
        ({"description": "no name"}, "#0: name None"),
        ({"name": "a", "description": 3}, "a: description is not a string"),
        ({"name": "a", "inputSchema": []}, "a: inputSchema is not an object"),
        ({"name": "a", "inputSchema": {"type": "string"}}, "a: inputSchema must have type object"),
        ({"name": "a", "inputSchema": {"description": "x" * 20_000}}, "a: inputSchema is larger than"),
    ],
)
def test_a_bad_entry_is_skipped_and_named(entry: Any, why: str) -> None:
    listing = parse_tool_list("kit", [entry, ECHO])
    assert [t.name for t in listing.tools] == ["echo"]
    (skipped,) = listing.skipped
    assert why in skipped


def test_duplicates_and_too_many_tools_are_skipped_and_long_descriptions_cut() -> None:
    many = [{"name": f"t{i}", "description": "d" * 5000} for i in range(MAX_TOOLS + 2)]
    listing = parse_tool_list("kit", [many[0], *many])
    assert len(listing.tools) == MAX_TOOLS
    assert listing.skipped[0] == "t0: listed twice"
    assert len(listing.skipped) == 3
    assert len(listing.tools[0].description) == MAX_DESCRIPTION


@pytest.mark.parametrize("answer", [None, "tools", {"tools": "x"}, {"nothing": []}, 3])
def test_a_bad_list_answer_is_a_protocol_error(answer: Any) -> None:
    with pytest.raises(PluginProtocolError, match=r"plugin kit answered tools\.list with no list"):
        parse_tool_list("kit", answer)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"content": "hi"}, PluginToolResult("hi")),
        ({"content": "no", "isError": True}, PluginToolResult("no", is_error=True)),
        ({"content": ""}, PluginToolResult("")),
        (
            {"content": [{"type": "text", "text": "a"}, {"type": "image", "data": "x"}, {"text": "b"}]},
            PluginToolResult("a\n[image content omitted]\nb"),
        ),
        ({"content": [], "isError": False}, PluginToolResult("")),
    ],
)
def test_call_answers(answer: Any, expected: PluginToolResult) -> None:
    assert parse_tool_result("kit", answer) == expected


@pytest.mark.parametrize(
    "answer",
    [None, "hi", {}, {"content": 3}, {"content": "x", "isError": "yes"}, {"content": ["x"]}],
)
def test_a_bad_call_answer_is_a_protocol_error(answer: Any) -> None:
    with pytest.raises(PluginProtocolError, match=r"plugin kit answered tools\.call without text content"):
        parse_tool_result("kit", answer)


def test_call_params_are_mcp_shaped() -> None:
    assert tool_call_params("echo", {"text": "hi"}) == {"name": "echo", "arguments": {"text": "hi"}}


def test_a_tools_plugin_is_granted_tools_list_and_call_by_default() -> None:
    d = parse_manifest('kind = "tools"\ncommand = ["./run"]\n', name="kit", directory="/p/kit", source="x")
    assert d.capabilities == frozenset(TOOL_METHODS) == {"tools.list", "tools.call"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_parsers_raise_only_protocol_errors(answer: Any) -> None:
    for parse in (parse_tool_list, parse_tool_result):
        with contextlib.suppress(PluginProtocolError):
            parse("kit", answer)
