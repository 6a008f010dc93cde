"""The httpx provider against our loopback OpenAI-compatible server (real HTTP, no mocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from appliance.agent.providers.openai import OpenAIProvider, ProviderRejected
from appliance.errors import ProviderUnavailable
from appliance.testing.openai_server import FakeModelServer, ModelReply

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def server() -> AsyncIterator[FakeModelServer]:
    fake = FakeModelServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        yield fake
        nursery.cancel_scope.cancel()


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await trio.lowlevel.checkpoint()


def provider(server: FakeModelServer, sleeps: Sleeps, **kw: object) -> OpenAIProvider:
    options: dict[str, object] = {"models": ("m1",), "max_attempts": 3, "request_timeout_s": 5.0}
    options.update(kw)
    return OpenAIProvider(server.base_url, api_key="sk-test", sleep=sleeps, random=lambda: 0.5, **options)  # type: ignore[arg-type]


async def test_streamed_reply_with_usage(server: FakeModelServer) -> None:
    sleeps = Sleeps()
    p = provider(server, sleeps)
    deltas: list[str] = []

    async def on_text(text: str) -> None:
        deltas.append(text)

    with trio.fail_after(10):
        result = await p.complete(MESSAGES, on_text=on_text)
    await p.aclose()
    assert result.text == "echo: hi"
    assert "".join(deltas) == "echo: hi"
    assert len(deltas) > 1
    assert result.usage.total == 18
    assert result.attempts == 1
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["model"] == "m1"


async def test_tool_calls_are_assembled(server: FakeModelServer) -> None:
    server.script.append(
        ModelReply(text="", tool_calls=(("time_now", "{}"), ("session_tail", '{"count": 2}')))
    )
    p = provider(server, Sleeps())
    with trio.fail_after(10):
        result = await p.complete(MESSAGES, tools=[{"type": "function", "function": {"name": "time_now"}}])
    await p.aclose()
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("time_now", "{}"),
        ("session_tail", '{"count": 2}'),
    ]
    assert result.finish_reason == "tool_calls"
    assert server.requests[0]["tools"][0]["function"]["name"] == "time_now"


async def test_429_is_retried_after_retry_after(server: FakeModelServer) -> None:
    server.script.extend([ModelReply(status=429, retry_after="2"), ModelReply(status=503)])
    sleeps = Sleeps()
    p = provider(server, sleeps)
    with trio.fail_after(10):
        result = await p.complete(MESSAGES)
    await p.aclose()
    assert result.text == "echo: hi"
    assert result.attempts == 3
    assert sleeps.delays[0] == 2.0  # Retry-After wins over the jittered 0.25 s
    assert sleeps.delays[1] == 0.5  # 0.5 * (0.5 * 2**1): full jitter with the injected draw


async def test_exhausted_retries_fall_back_to_the_next_model(server: FakeModelServer) -> None:
    server.script.extend([ModelReply(status=500), ModelReply(status=502)])
    p = provider(server, Sleeps(), models=("big", "small"), max_attempts=2)
    with trio.fail_after(10):
        result = await p.complete(MESSAGES)
    await p.aclose()
    assert [r["model"] for r in server.requests] == ["big", "big", "small"]
    assert result.model == "small"
    assert result.attempts == 3


async def test_all_models_failing_raises_provider_unavailable(server: FakeModelServer) -> None:
    server.default = ModelReply(status=500)
    p = provider(server, Sleeps(), models=("a", "b"), max_attempts=2)
    with trio.fail_after(10), pytest.raises(ProviderUnavailable) as info:
        await p.complete(MESSAGES)
    await p.aclose()
    assert info.value.retryable
    assert len(server.requests) == 4


async def test_bad_key_is_not_retried_nor_falls_back(server: FakeModelServer) -> None:
    server.script.append(ModelReply(status=401))
    p = provider(server, Sleeps(), models=("a", "b"))
    with trio.fail_after(10), pytest.raises(ProviderRejected) as info:
        await p.complete(MESSAGES)
    await p.aclose()
    assert not info.value.retryable
    assert "401" in info.value.message
    assert len(server.requests) == 1


async def test_broken_connection_before_text_is_retried(server: FakeModelServer) -> None:
    server.script.append(ModelReply(break_after=1))  # only the role chunk, then the socket closes
    sleeps = Sleeps()
    p = provider(server, sleeps)
    with trio.fail_after(10):
        result = await p.complete(MESSAGES)
    await p.aclose()
    assert result.text == "echo: hi"
    assert result.attempts == 2
    assert len(sleeps.delays) == 1


async def test_broken_connection_after_text_is_not_retried(server: FakeModelServer) -> None:
    server.script.append(ModelReply(text="partial reply here", chunks=3, break_after=3))
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    p = provider(server, Sleeps())
    with trio.fail_after(10), pytest.raises(ProviderUnavailable) as info:
        await p.complete(MESSAGES, on_text=on_text)
    await p.aclose()
    assert "mid-reply" in info.value.message or "ended early" in info.value.message
    assert seen
    assert len(server.requests) == 1


async def test_slow_stream_hits_the_request_timeout(server: FakeModelServer) -> None:
    server.default = ModelReply(delay_s=0.3, chunks=1)
    p = provider(server, Sleeps(), request_timeout_s=0.1, max_attempts=2)
    with trio.fail_after(10), pytest.raises(ProviderUnavailable) as info:
        await p.complete(MESSAGES)
    await p.aclose()
    assert "timed out" in info.value.message
    assert len(server.requests) == 2


async def test_non_streaming_server_answer_is_accepted(server: FakeModelServer) -> None:
    server.script.append(ModelReply(text="plain", stream=False))
    p = provider(server, Sleeps())
    with trio.fail_after(10):
        result = await p.complete(MESSAGES)
    await p.aclose()
    assert result.text == "plain"
    assert result.usage.total == 18
