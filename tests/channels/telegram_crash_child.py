"""Child process for the kill -9 test: long-polls the loopback Bot API with the offset in SQLite and a
journal that dedupes on the idempotency key (what the queue journal does), answering new keys only."""

from __future__ import annotations

import sys

import apsw
import trio

from appliance.channels.base import InboundMessage
from appliance.channels.offsets import SqliteOffsetStore
from appliance.channels.settings import TelegramSettings
from appliance.channels.telegram import TelegramAdapter


async def main(api_base: str, db_path: str) -> None:
    conn = apsw.Connection(db_path)
    conn.setbusytimeout(2000)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS journal (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS deliveries (key TEXT NOT NULL)")
    settings = TelegramSettings(bot_token="123:TEST", api_base=api_base, allow_all=True, poll_timeout_s=1)
    adapter = TelegramAdapter(settings, offsets=SqliteOffsetStore(conn))

    async def handler(msg: InboundMessage) -> None:
        conn.execute("INSERT INTO deliveries (key) VALUES (?)", (msg.idempotency_key,))
        before = conn.changes()
        conn.execute(
            "INSERT OR IGNORE INTO journal (key, text) VALUES (?, ?)", (msg.idempotency_key, msg.text)
        )
        if conn.changes() and before:
            await adapter.send(msg.chat_id, f"answer to {msg.text}")
        await trio.sleep(0.005)

    await adapter.run(handler)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
