"""SSE decoding, stream assembly and the retry policy (sans-IO)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from appliance.agent.providers.wire import (
    SseDecoder,
    StreamAssembler,
    Usage,
    build_request,
    parse_retry_after,
    retry_delay_s,
)


def _stream() -> bytes:
    chunks = [
        {"model": "m1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "function": {"name": "time_now", "arguments": '{"a"'}}
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}},
    ]
    body = b": comment\n\n" + b"".join(f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks)
    return body + b"data: [DONE]\n\n"


def _assemble(pieces: list[bytes]) -> StreamAssembler:
    decoder = SseDecoder()
    asm = StreamAssembler()
    text = ""
    for piece in pieces:
        for data in decoder.feed(piece):
            text += asm.feed_data(data)
    for data in decoder.close():
        text += asm.feed_data(data)
    assert text == asm.result().text
    return asm


def test_stream_assembles_text_tool_calls_and_usage() -> None:
    asm = _assemble([_stream()])
    result = asm.result()
    assert asm.done
    assert result.text == "Hello"
    assert result.model == "m1"
    assert result.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [("c1", "time_now", '{"a":1}')]
    assert result.usage == Usage(5, 2, 0, 7)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_any_split_gives_the_same_result(cuts: list[int]) -> None:
    raw = _stream()
    pieces, at = [], 0
    for cut in cuts:
        pieces.append(raw[at : at + cut])
        at += cut
    pieces.append(raw[at:])
    assert _assemble(pieces).result() == _assemble([raw]).result()


def test_multiline_data_and_unterminated_last_event() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"event: x\ndata: a\ndata: b\n\ndata: tail") == ["a\nb"]
    assert decoder.close() == ["tail"]


def test_retry_delay_is_full_jitter_capped_and_honours_retry_after() -> None:
    assert retry_delay_s(0, base_s=0.5, cap_s=10, random=0.5) == 0.25
    assert retry_delay_s(3, base_s=0.5, cap_s=10, random=0.999) < 4.0
    assert retry_delay_s(10, base_s=0.5, cap_s=10, random=0.999) <= 10
    assert retry_delay_s(0, base_s=0.5, cap_s=10, random=0.0, retry_after_s=3) == 3
    assert retry_delay_s(0, base_s=0.5, cap_s=10, random=0.0, retry_after_s=99) == 10


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after(None) is None


def test_build_request_asks_for_usage_when_streaming() -> None:
    body = build_request("m", [{"role": "user", "content": "hi"}], tools=[{"type": "function"}])
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["tools"] == [{"type": "function"}]
    assert "stream_options" not in build_request("m", [], stream=False)


@given(st.binary(max_size=300))
def test_decoder_takes_any_bytes(raw: bytes) -> None:
    decoder = SseDecoder()
    out = decoder.feed(raw) + decoder.close()
    assert all(isinstance(item, str) for item in out)
