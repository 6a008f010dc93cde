"""Signed webhooks: the sans-IO verifier and replay guard, then the real HTTP server and callback."""

from __future__ import annotations

import json
from typing import Any

import h11
import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.channels.base import InboundMessage
from appliance.channels.settings import WebhookSettings
from appliance.channels.webhook import WebhookAdapter
from appliance.channels.webhook_signing import ReplayGuard, Verdict, signed_headers, verify
from appliance.errors import DefenderBlocked, QueueFull

SECRET = b"s3cret-s3cret-s3cret"
NOW = 1_700_000_000


def _body(**kw: Any) -> bytes:
    data = {"chatId": "c1", "senderId": "u1", "text": "hello", "messageId": "m1"}
    data.update(kw)
    return json.dumps(data).encode()


def test_verify_good_bad_stale_replayed_malformed() -> None:
    guard = ReplayGuard(window_s=300, capacity=16)
    body = _body()
    good = signed_headers(SECRET, NOW, "n" * 20, body)
    assert verify(SECRET, good, body, now_s=NOW + 5, guard=guard) is Verdict.OK
    assert verify(SECRET, good, body, now_s=NOW + 6, guard=guard) is Verdict.REPLAYED
    assert verify(SECRET, good, body + b" ", now_s=NOW, guard=guard) is Verdict.BAD_SIGNATURE
    assert verify(b"other", good, body, now_s=NOW, guard=guard) is Verdict.BAD_SIGNATURE
    assert verify(b"", good, body, now_s=NOW, guard=guard) is Verdict.BAD_SIGNATURE
    old = signed_headers(SECRET, NOW - 301, "o" * 20, body)
    assert verify(SECRET, old, body, now_s=NOW, guard=guard) is Verdict.STALE
    future = signed_headers(SECRET, NOW + 301, "f" * 20, body)
    assert verify(SECRET, future, body, now_s=NOW, guard=guard) is Verdict.STALE
    assert verify(SECRET, {}, body, now_s=NOW, guard=guard) is Verdict.MALFORMED
    short_nonce = signed_headers(SECRET, NOW, "abc", body)
    assert verify(SECRET, short_nonce, body, now_s=NOW, guard=guard) is Verdict.MALFORMED


def test_eviction_raises_floor_so_evicted_nonce_cannot_replay() -> None:
    guard = ReplayGuard(window_s=300, capacity=2)
    assert guard.check("a" * 16, NOW, NOW) is Verdict.OK
    assert guard.check("b" * 16, NOW + 1, NOW + 1) is Verdict.OK
    assert guard.check("c" * 16, NOW + 2, NOW + 2) is Verdict.OK  # evicts "a", floor = NOW
    assert len(guard) == 2
    assert guard.floor == NOW
    assert guard.check("a" * 16, NOW, NOW + 3) is Verdict.STALE


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["n" * 16 + str(i) for i in range(12)]), st.integers(0, 50), st.integers(0, 5)
        ),
        max_size=80,
    ),
    st.integers(1, 6),
)
def test_replay_guard_bounded_and_never_accepts_twice(
    events: list[tuple[str, int, int]], capacity: int
) -> None:
    guard = ReplayGuard(window_s=10, capacity=capacity)
    now = 0
    accepted: set[tuple[str, int]] = set()
    for nonce, ts, advance in events:
        now += advance
        if guard.check(nonce, ts, now) is Verdict.OK:
            # a replay repeats the signed (nonce, timestamp) pair: it is never accepted twice
            assert (nonce, ts) not in accepted
            accepted.add((nonce, ts))
        assert len(guard) <= capacity


async def _post(
    port: int, body: bytes, headers: dict[str, str], method: str = "POST", path: str = "/hooks/inbound"
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.request(method, f"http://127.0.0.1:{port}{path}", content=body, headers=headers)


async def test_inbound_server_accepts_signed_and_refuses_the_rest() -> None:
    got: list[InboundMessage] = []
    busy = [True]

    async def handler(msg: InboundMessage) -> None:
        if msg.text == "busy" and busy[0]:
            busy[0] = False
            raise QueueFull("queue full", retry_after_ms=1500)
        if msg.text == "evil":
            raise DefenderBlocked("blocked")
        got.append(msg)

    adapter = WebhookAdapter(
        WebhookSettings(secret=SECRET.decode(), port=0, max_body_bytes=1024), now_s=lambda: NOW
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: adapter.run(handler, task_status=task_status))
            body = _body()
            ok = signed_headers(SECRET, NOW, "nonce-0000000001", body)
            r = await _post(port, body, ok)
            assert r.status_code == 202
            assert r.json()["idempotencyKey"] == "webhook:c1:m1"
            assert (await _post(port, body, ok)).status_code == 409  # replayed
            bad = dict(ok, **{"x-appliance-nonce": "nonce-0000000002"})
            assert (await _post(port, body, bad)).status_code == 401  # signature covers the nonce
            stale = signed_headers(SECRET, NOW - 1000, "nonce-0000000003", body)
            assert (await _post(port, body, stale)).status_code == 401
            assert (await _post(port, body, {})).status_code == 401
            junk = b"[1,2]"
            assert (
                await _post(port, junk, signed_headers(SECRET, NOW, "nonce-0000000004", junk))
            ).status_code == 400
            assert (await _post(port, b"", {}, method="GET")).status_code == 405
            assert (await _post(port, b"", {}, path="/other")).status_code == 404
            big = _body(text="x" * 2000)
            assert (
                await _post(port, big, signed_headers(SECRET, NOW, "nonce-0000000005", big))
            ).status_code == 413
            busy_body = _body(text="busy", messageId="m2")
            r = await _post(port, busy_body, signed_headers(SECRET, NOW, "nonce-0000000006", busy_body))
            assert r.status_code == 503
            assert r.headers["retry-after"] == "2"
            # the sender retries with a fresh nonce and the same messageId: accepted, same key
            r = await _post(port, busy_body, signed_headers(SECRET, NOW, "nonce-0000000007", busy_body))
            assert r.status_code == 202
            evil = _body(text="evil", messageId="m3")
            r = await _post(port, evil, signed_headers(SECRET, NOW, "nonce-0000000008", evil))
            assert r.status_code == 403
            assert r.json()["error"] == "FORBIDDEN"
            assert [m.text for m in got] == ["hello", "busy"]
            assert got[0].chat_id == "hook:c1"
            assert got[0].sender_id == "hook:u1"
            nursery.cancel_scope.cancel()


async def test_bounded_run_returns_after_max_messages() -> None:
    adapter = WebhookAdapter(WebhookSettings(secret=SECRET.decode(), port=0), now_s=lambda: NOW)
    got: list[InboundMessage] = []

    async def handler(msg: InboundMessage) -> None:
        got.append(msg)

    result: list[int] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def run(task_status: trio.TaskStatus[int]) -> None:
                result.append(await adapter.run(handler, max_messages=2, task_status=task_status))

            port = await nursery.start(run)
            for i in range(2):
                body = _body(messageId=f"m{i}")
                assert (
                    await _post(port, body, signed_headers(SECRET, NOW, f"nonce-run-{i:08d}", body))
                ).status_code == 202
    assert result == [2]
    assert len(got) == 2


async def _receiver(
    store: list[tuple[dict[str, str], bytes]], status: int, task_status: trio.TaskStatus[int]
) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        req: Any = None
        body = b""
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(ev, h11.Request):
                req = ev
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
        store.append(({k.decode(): v.decode() for k, v in req.headers}, body))
        await stream.send_all(
            conn.send(
                h11.Response(status_code=status, headers=[("content-length", "0"), ("connection", "close")])
            )
            or b""
        )
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def test_outbound_callback_is_signed_and_split() -> None:
    store: list[tuple[dict[str, str], bytes]] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_receiver, store, 200)
            adapter = WebhookAdapter(
                WebhookSettings(
                    secret=SECRET.decode(), callback_url=f"http://127.0.0.1:{port}/cb", max_message_chars=16
                ),
                now_s=lambda: NOW,
            )
            sent = await adapter.send("hook:c1", "alpha beta gamma delta")
            await adapter.aclose()
            assert len(sent.message_ids) == 2
            guard = ReplayGuard()
            bodies = []
            for headers, body in store:
                assert verify(SECRET, headers, body, now_s=NOW, guard=guard) is Verdict.OK
                bodies.append(json.loads(body))
            assert [b["text"] for b in bodies] == ["alpha beta gamma", "delta"]
            assert bodies[0]["chatId"] == "c1"
            assert bodies[1]["parts"] == 2
            nursery.cancel_scope.cancel()


async def test_outbound_callback_error_is_typed() -> None:
    from appliance.channels.base import ChannelSendFailed

    store: list[tuple[dict[str, str], bytes]] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_receiver, store, 500)
            adapter = WebhookAdapter(WebhookSettings(secret="k", callback_url=f"http://127.0.0.1:{port}/cb"))
            try:
                with pytest.raises(ChannelSendFailed) as info:
                    await adapter.send("hook:c1", "hi")
                assert info.value.details == {"chat_id": "hook:c1", "status": 500}
            finally:
                await adapter.aclose()
            nursery.cancel_scope.cancel()
