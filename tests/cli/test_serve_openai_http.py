"""The official ``openai`` package against ``appliance serve``'s own port (``gateway.http_chat_completions``)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from appliance.testing.process import start_serve

pytestmark = pytest.mark.integration


def test_openai_client_gets_normal_and_streamed_replies_from_serve(tmp_path: Path) -> None:
    serve = start_serve(tmp_path / "data", env={"APPLIANCE_GATEWAY_HTTP_CHAT_COMPLETIONS": "true"})
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{serve.port}/v1", api_key=serve.token, max_retries=0
        )
        reply = client.chat.completions.create(
            model="openclaw", messages=[{"role": "user", "content": "/tool time_now"}], timeout=30
        )
        assert reply.choices[0].message.role == "assistant"
        assert "epoch ms" in (reply.choices[0].message.content or "")

        chunks = client.chat.completions.create(
            model="openclaw",
            messages=[{"role": "user", "content": "/tool model_info"}],
            stream=True,
            timeout=30,
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert text

        plain = client.chat.completions.create(
            model="openclaw", messages=[{"role": "user", "content": "hello"}], timeout=30
        )
        assert "no model configured" in (plain.choices[0].message.content or "").lower()

        bad = openai.OpenAI(base_url=f"http://127.0.0.1:{serve.port}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "hi"}], timeout=30
            )
    finally:
        assert serve.terminate() == 0, serve.log_text()
    assert "Traceback" not in serve.log_text()


def test_chat_completions_is_off_by_default(tmp_path: Path) -> None:
    serve = start_serve(tmp_path / "data")
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{serve.port}/v1", api_key=serve.token, max_retries=0
        )
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="openclaw", messages=[{"role": "user", "content": "hi"}], timeout=30
            )
    finally:
        serve.terminate()
