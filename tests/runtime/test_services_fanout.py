"""Scheduled turns reach subscribed clients: a real ``appliance serve``, a cron job run now, and a client
subscribed to the job's session with ``sessions.messages.subscribe``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from appliance.gateway.client import open_gateway_client
from appliance.testing.process import ServeProcess, start_serve

pytestmark = pytest.mark.integration


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    proc = start_serve(tmp_path / "data", env={"APPLIANCE_LOG_LEVEL": "warning"})
    try:
        yield proc
    finally:
        proc.terminate()


async def test_a_cron_turn_is_streamed_to_the_sessions_subscribers(serve: ServeProcess) -> None:
    with trio.fail_after(30):
        async with (
            open_gateway_client(serve.url, serve.token) as watcher,
            open_gateway_client(serve.url, serve.token) as operator,
        ):
            job = await operator.call(
                "cron.add",
                {
                    "name": "clock",
                    "schedule": {"kind": "every", "everyMs": 3_600_000},
                    "sessionTarget": "isolated",
                    "payload": {"kind": "agentTurn", "message": "/tool time_now"},
                },
            )
            key = job["sessionKey"]
            subscribed = await watcher.call("sessions.messages.subscribe", {"key": key})
            assert subscribed == {"subscribed": True, "key": key}
            ran = await operator.call("cron.run", {"id": job["id"]})
            assert ran["ran"] is True

            seen: list[dict[str, Any]] = []
            async for frame in watcher.event_stream:
                seen.append(frame)
                payload = frame.get("payload") or {}
                if frame["event"] == "chat" and payload.get("state") in ("final", "error"):
                    break
            final = seen[-1]["payload"]
            assert final["sessionKey"] == key
            assert final["state"] == "final", final
            assert {f["event"] for f in seen} >= {"chat", "session.message"}
            seqs = [f["seq"] for f in seen if "seq" in f]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the watcher's own counter, no gaps
            # the operator, who started it with cron.run but subscribed to nothing, got none of it
            assert not [f for f in operator.events if f["event"] in ("chat", "session.message")]
