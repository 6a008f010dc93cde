"""Where channels remember how far they have read (Telegram's ``getUpdates`` offset).

Rules:
- ``advance`` is called only *after* the inbound handler durably accepted the update, so a crash
  before it re-delivers the update (never skips it); the handler's idempotency key makes that
  re-delivery harmless (never answered twice);
- an offset never moves backwards: ``advance`` keeps the maximum;
- the DDL is the module constant :data:`CHANNELS_SCHEMA_SQL` so the store's migration ladder can take it
  over; until then :class:`SqliteOffsetStore` applies it with ``CREATE ... IF NOT EXISTS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from appliance.store.migrations import CHANNELS_SCHEMA_SQL

__all__ = ["CHANNELS_SCHEMA_SQL", "MemoryOffsetStore", "OffsetStore", "SqliteOffsetStore"]


class OffsetStore(Protocol):
    def load(self, channel_key: str) -> int | None:
        """The next offset to ask for, or None when this channel never acknowledged anything."""
        ...

    def advance(self, channel_key: str, next_offset: int) -> None:
        """Durably record that everything below ``next_offset`` was accepted (monotonic)."""
        ...


class MemoryOffsetStore:
    """For tests and the ``appliance channel`` operator check: forgets everything on exit."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}

    def load(self, channel_key: str) -> int | None:
        return self.offsets.get(channel_key)

    def advance(self, channel_key: str, next_offset: int) -> None:
        self.offsets[channel_key] = max(next_offset, self.offsets.get(channel_key, next_offset))


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SqliteOffsetStore:
    """An :class:`OffsetStore` on an apsw connection; each ``advance`` is one autocommitted statement, so
    it is in the WAL (and survives ``kill -9``) when it returns."""

    def __init__(self, conn: Any, *, now_ms: Callable[[], int] = _wall_ms) -> None:
        self._conn = conn
        self._now_ms = now_ms
        with self._conn:
            self._conn.execute(CHANNELS_SCHEMA_SQL)

    def load(self, channel_key: str) -> int | None:
        row = self._conn.execute(
            "SELECT next_offset FROM channel_offsets WHERE channel_key = ?", (channel_key,)
        ).fetchone()
        return None if row is None else int(row[0])

    def advance(self, channel_key: str, next_offset: int) -> None:
        self._conn.execute(
            "INSERT INTO channel_offsets (channel_key, next_offset, updated_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (channel_key) DO UPDATE SET "
            "next_offset = max(next_offset, excluded.next_offset), updated_ms = excluded.updated_ms",
            (channel_key, next_offset, self._now_ms()),
        )
