"""``POST /v1/chat/completions``: the official ``openai`` package gets a normal and a streamed reply.

The ``openai`` package is a dev-only dependency; its tests skip when it is not installed. The raw
HTTP checks (auth, disabled, bad bodies) use httpx and always run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from appliance.agent import AgentRuntime
from appliance.agent.providers.openai import OpenAIProvider
from appliance.config.settings import Settings
from appliance.gateway.openai_http import HttpProblem, OpenAIHttpConfig, parse_chat_request, serve_openai_http
from appliance.store import Database, open_database
from appliance.testing.openai_server import FakeModelServer

TOKEN = "http-token-0123456789"
HAVE_OPENAI = importlib.util.find_spec("openai") is not None
needs_openai = pytest.mark.skipif(
    not HAVE_OPENAI, reason="the official `openai` package is not installed (dev dependency)"
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "h.db")
    yield database
    database.close()


async def _serve(
    db: Database, *, enabled: bool = True, with_model: bool = True
) -> AsyncIterator[tuple[str, FakeModelServer]]:
    model = FakeModelServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(model.serve)
        provider = OpenAIProvider(model.base_url, models=("m1",)) if with_model else None
        runtime = AgentRuntime.from_settings(
            Settings(), db, wall_ms=lambda: 1_795_420_774_708, provider=provider
        )
        runtime.start(nursery)
        port = await nursery.start(serve_openai_http, runtime, OpenAIHttpConfig(enabled=enabled, token=TOKEN))
        yield f"http://127.0.0.1:{port}/v1", model
        await runtime.aclose()
        nursery.cancel_scope.cancel()


@pytest.fixture
async def endpoint(db: Database) -> AsyncIterator[tuple[str, FakeModelServer]]:
    async for pair in _serve(db):
        yield pair


@needs_openai
async def test_openai_package_gets_a_normal_reply(endpoint: tuple[str, FakeModelServer]) -> None:
    import openai

    base, _model = endpoint

    def ask() -> Any:
        client = openai.OpenAI(base_url=base, api_key=TOKEN, max_retries=0)
        try:
            return client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "hello"}]
            )
        finally:
            client.close()

    with trio.fail_after(30):
        reply = await trio.to_thread.run_sync(ask)
    assert reply.choices[0].message.content == "echo: hello"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == 18


@needs_openai
async def test_openai_package_gets_a_streamed_reply(endpoint: tuple[str, FakeModelServer]) -> None:
    import openai

    base, _model = endpoint

    def ask() -> list[Any]:
        client = openai.OpenAI(base_url=base, api_key=TOKEN, max_retries=0)
        try:
            stream = client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "/tool time_now"}], stream=True
            )
            return list(stream)
        finally:
            client.close()

    with trio.fail_after(30):
        chunks = await trio.to_thread.run_sync(ask)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "2026-11-23T07:59:34.708Z (epoch ms 1795420774708)"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


@needs_openai
async def test_openai_package_sees_a_bad_token_as_401(endpoint: tuple[str, FakeModelServer]) -> None:
    import openai

    base, _model = endpoint

    def ask() -> None:
        client = openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
        try:
            client.chat.completions.create(model="openclaw", messages=[{"role": "user", "content": "x"}])
        finally:
            client.close()

    with trio.fail_after(30), pytest.raises(openai.AuthenticationError):
        await trio.to_thread.run_sync(ask)


async def test_streamed_model_reply_over_raw_http(endpoint: tuple[str, FakeModelServer]) -> None:
    base, model = endpoint
    body = {"model": "openclaw", "stream": True, "messages": [{"role": "user", "content": "stream me"}]}
    with trio.fail_after(30):
        async with httpx.AsyncClient() as client:
            res = await client.post(
                f"{base}/chat/completions", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
            )
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in res.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert model.requests[-1]["messages"][-1]["content"] == "stream me"


async def test_tool_error_is_a_400(endpoint: tuple[str, FakeModelServer]) -> None:
    base, _model = endpoint
    body = {"model": "openclaw", "messages": [{"role": "user", "content": "/tool nope"}]}
    with trio.fail_after(30):
        async with httpx.AsyncClient() as client:
            res = await client.post(
                f"{base}/chat/completions", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
            )
    assert res.status_code == 400
    assert "unknown tool" in res.json()["error"]["message"]


async def test_auth_and_bad_bodies(endpoint: tuple[str, FakeModelServer]) -> None:
    base, _model = endpoint
    url = f"{base}/chat/completions"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with trio.fail_after(30):
        async with httpx.AsyncClient() as client:
            unauth = await client.post(url, json={"messages": []})
            bad_json = await client.post(url, content=b"{nope", headers=auth)
            no_user = await client.post(
                url, json={"messages": [{"role": "system", "content": "x"}]}, headers=auth
            )
            get = await client.get(url, headers=auth)
    assert unauth.status_code == 401
    assert unauth.json() == {"error": {"message": "Unauthorized", "type": "unauthorized"}}
    assert bad_json.status_code == 400
    assert no_user.status_code == 400
    assert get.status_code == 405


async def test_disabled_by_default_answers_404(db: Database) -> None:
    async for base, _model in _serve(db, enabled=False):
        with trio.fail_after(30):
            async with httpx.AsyncClient() as client:
                res = await client.post(
                    f"{base}/chat/completions",
                    json={"messages": [{"role": "user", "content": "x"}]},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
        assert res.status_code == 404
    assert OpenAIHttpConfig().enabled is False


def test_parse_chat_request_targets() -> None:
    req = parse_chat_request(
        b'{"model":"openclaw/helper","user":"Bob","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}'
    )
    assert (req.agent_id, req.session_key, req.message, req.stream) == (
        "helper",
        "agent:helper:openai:bob",
        "hi",
        False,
    )
    with pytest.raises(HttpProblem):
        parse_chat_request(b'{"messages":[{"role":"user","content":"x"}],"stream":"yes"}')
