"""Channel figures over real loopback sockets: inbound messages/s and outbound send latency for
Telegram (Bot API long polling, SQLite offsets) and the WhatsApp bridge, signed-webhook requests/s,
and the sans-IO costs (HMAC verify, split_message).

    .venv/bin/python bench/bench_channels.py              # 1000 messages per channel
    .venv/bin/python bench/bench_channels.py -n 200 --quick

The loopback servers (appliance.testing) run in the same process and trio loop, so the figures are
an upper bound on our own overhead on this machine, not on the platforms' latency.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import apsw
import trio

from appliance.channels.base import InboundMessage, split_message
from appliance.channels.offsets import SqliteOffsetStore
from appliance.channels.settings import TelegramSettings, WebhookSettings, WhatsAppSettings
from appliance.channels.telegram import TelegramAdapter
from appliance.channels.webhook import WebhookAdapter
from appliance.channels.webhook_signing import ReplayGuard, signed_headers, verify
from appliance.channels.whatsapp import WhatsAppAdapter
from appliance.log import configure
from appliance.testing.telegram_server import FakeTelegramServer
from appliance.testing.whatsapp_bridge import FakeWhatsAppBridge


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, **fields: object) -> None:
    print(json.dumps({"bench": name, **fields}))


async def noop(msg: InboundMessage) -> None:
    return None


async def bench_telegram(n: int, db_dir: Path) -> None:
    server = FakeTelegramServer("123:TEST")
    conn = apsw.Connection(str(db_dir / "tg.db"))
    conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        settings = TelegramSettings(
            bot_token="123:TEST", allow_all=True, poll_timeout_s=1, api_base=f"http://127.0.0.1:{port}"
        )
        for i in range(n):
            server.push_message(f"m{i}")
        adapter = TelegramAdapter(settings, offsets=SqliteOffsetStore(conn))
        t0 = time.perf_counter()
        await adapter.run(noop, max_messages=n)
        elapsed = time.perf_counter() - t0
        report("telegram_inbound", messages=n, msgs_per_s=round(n / elapsed, 1), sqlite_offsets=True)
        lat: list[float] = []
        for i in range(min(n, 300)):
            t = time.perf_counter()
            await adapter.send("tg:42", f"reply {i}")
            lat.append((time.perf_counter() - t) * 1000)
        report(
            "telegram_send", sends=len(lat), p50_ms=round(pct(lat, 0.5), 3), p99_ms=round(pct(lat, 0.99), 3)
        )
        await adapter.aclose()
        nursery.cancel_scope.cancel()


async def bench_whatsapp(n: int) -> None:
    bridge = FakeWhatsAppBridge("tok")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(bridge.serve)
        settings = WhatsAppSettings(bridge_url=f"ws://127.0.0.1:{port}/", bridge_token="tok", allow_all=True)
        for i in range(n):
            bridge.push_message(f"m{i}")
        adapter = WhatsAppAdapter(settings)
        t0 = time.perf_counter()
        await adapter.run(noop, max_messages=n)
        elapsed = time.perf_counter() - t0
        report("whatsapp_inbound", messages=n, msgs_per_s=round(n / elapsed, 1))
        nursery.start_soon(adapter.run, noop)
        lat: list[float] = []
        for i in range(min(n, 300)):
            t = time.perf_counter()
            await adapter.send("4915100000001@s.whatsapp.net", f"reply {i}")
            lat.append((time.perf_counter() - t) * 1000)
        report(
            "whatsapp_send", sends=len(lat), p50_ms=round(pct(lat, 0.5), 3), p99_ms=round(pct(lat, 0.99), 3)
        )
        nursery.cancel_scope.cancel()


async def bench_webhook(n: int) -> None:
    import httpx

    secret = b"bench-secret"
    adapter = WebhookAdapter(WebhookSettings(secret=secret.decode(), port=0))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: adapter.run(noop, task_status=task_status))
        async with httpx.AsyncClient() as client:
            t0 = time.perf_counter()
            for i in range(n):
                body = json.dumps(
                    {"chatId": "c", "senderId": "u", "text": f"m{i}", "messageId": str(i)}
                ).encode()
                headers = signed_headers(secret, int(time.time()), f"bench-nonce-{i:010d}", body)
                resp = await client.post(
                    f"http://127.0.0.1:{port}/hooks/inbound", content=body, headers=headers
                )
                assert resp.status_code == 202, resp.text
            elapsed = time.perf_counter() - t0
        report("webhook_inbound", requests=n, req_per_s=round(n / elapsed, 1), connection="close per request")
        nursery.cancel_scope.cancel()


def bench_sans_io(n: int) -> None:
    secret = b"k" * 32
    body = b"x" * 1024
    guard = ReplayGuard(300, 4096)
    headers = [signed_headers(secret, 1_700_000_000, f"nonce-{i:012d}", body) for i in range(n)]
    t0 = time.perf_counter()
    for h in headers:
        verify(secret, h, body, now_s=1_700_000_000, guard=guard)
    per = (time.perf_counter() - t0) / n * 1e6
    report("webhook_verify", body_bytes=len(body), us_per_request=round(per, 2))
    text = ("lorem ipsum dolor sit amet " * 2000)[:50_000]
    t0 = time.perf_counter()
    for _ in range(200):
        split_message(text, 4096)
    report("split_message", chars=len(text), us_per_call=round((time.perf_counter() - t0) / 200 * 1e6, 1))


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await bench_telegram(args.n, Path(tmp))
    await bench_whatsapp(args.n)
    await bench_webhook(args.n // 2 if args.quick else args.n)
    bench_sans_io(2000 if args.quick else 20_000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=1000, help="messages per channel")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    configure(level="warning")
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
