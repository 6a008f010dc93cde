"""The schema ladder: numbered migrations applied on ``PRAGMA user_version``.

Rules:
- versions start at 1 and increase by one; a migration never changes once released (add a new one);
- each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with its ``user_version``
  bump, so a failure leaves the database at the previous version (see ``db.py``);
- a migration is SQL text or a function of the open ``apsw.Connection``;
- tables are ``STRICT``; times are epoch milliseconds; JSON is stored as TEXT.
Later parts (queue, scheduler, defender ledger) append migrations here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

__all__ = ["MIGRATIONS", "Migration", "latest_version"]


@attrs.frozen
class Migration:
    version: int
    name: str
    #: SQL text (may hold several statements) or ``fn(connection)``
    apply: str | Callable[[Any], None]


_V1_SESSIONS = """
CREATE TABLE sessions (
    key                  TEXT PRIMARY KEY,
    session_id           TEXT NOT NULL UNIQUE,
    agent_id             TEXT NOT NULL,
    label                TEXT,
    spawned_by           TEXT,
    spawn_depth          INTEGER,
    overrides            TEXT NOT NULL DEFAULT '{}',
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    last_interaction_at  INTEGER,
    session_started_at   INTEGER NOT NULL,
    lifecycle_revision   TEXT NOT NULL DEFAULT '',
    input_tokens         INTEGER NOT NULL DEFAULT 0,
    output_tokens        INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens    INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens   INTEGER NOT NULL DEFAULT 0,
    total_tokens         INTEGER NOT NULL DEFAULT 0,
    cost_usd             REAL NOT NULL DEFAULT 0,
    context_tokens       INTEGER,
    archived             INTEGER NOT NULL DEFAULT 0,
    pinned               INTEGER NOT NULL DEFAULT 0,
    model_provider       TEXT,
    model                TEXT,
    last_run_id          TEXT,
    last_run_error       TEXT,
    compaction_count     INTEGER NOT NULL DEFAULT 0
) STRICT;
-- OpenClaw compares labels exactly; NULL means "no label"
CREATE UNIQUE INDEX sessions_label ON sessions(label) WHERE label IS NOT NULL;
CREATE INDEX sessions_updated ON sessions(updated_at DESC);
CREATE INDEX sessions_agent ON sessions(agent_id, updated_at DESC);
CREATE INDEX sessions_spawned_by ON sessions(spawned_by) WHERE spawned_by IS NOT NULL;

-- no foreign key: sessions.delete may keep the transcript (deleteTranscript=false)
CREATE TABLE transcripts (
    id               INTEGER PRIMARY KEY,
    session_key      TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    role             TEXT NOT NULL,
    content          TEXT NOT NULL,
    ts               INTEGER NOT NULL,
    idempotency_key  TEXT,
    usage            TEXT,
    UNIQUE (session_key, seq)
) STRICT;
CREATE INDEX transcripts_session_id ON transcripts(session_id, seq);
CREATE UNIQUE INDEX transcripts_idempotency
    ON transcripts(session_key, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- no foreign key: cost history outlives a deleted session
CREATE TABLE usage (
    id                INTEGER PRIMARY KEY,
    session_key       TEXT,
    session_id        TEXT,
    agent_id          TEXT NOT NULL,
    ts                INTEGER NOT NULL,
    day               TEXT NOT NULL,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    input_tokens      INTEGER NOT NULL DEFAULT 0,
    output_tokens     INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens      INTEGER NOT NULL DEFAULT 0,
    input_cost        REAL NOT NULL DEFAULT 0,
    output_cost       REAL NOT NULL DEFAULT 0,
    cache_read_cost   REAL NOT NULL DEFAULT 0,
    cache_write_cost  REAL NOT NULL DEFAULT 0,
    total_cost        REAL NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX usage_day ON usage(day, agent_id);
CREATE INDEX usage_session ON usage(session_key, ts);
"""

MIGRATIONS: tuple[Migration, ...] = (Migration(1, "sessions, transcripts, usage", _V1_SESSIONS),)


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return max((m.version for m in migrations), default=0)


def check_ladder(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless versions are 1, 2, 3… in order (a programming error, not a store error)."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration ladder broken at {migration.name!r}: v{migration.version} != v{expected}"
            )
