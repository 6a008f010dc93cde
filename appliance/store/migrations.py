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

__all__ = [
    "AGENT_TURNS_SCHEMA_SQL",
    "CHANNELS_SCHEMA_SQL",
    "MIGRATIONS",
    "OUTBOX_SCHEMA_SQL",
    "QUEUE_SCHEMA_SQL",
    "SCHEDULER_SCHEMA_SQL",
    "Migration",
    "latest_version",
]


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

# v2: the run queue journal, the scheduler's tasks and runs, agent turns. Their components also create them
# with IF NOT EXISTS so they work on a bare connection in their own tests; the ladder is the authority.
QUEUE_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS queue_items (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id         TEXT NOT NULL UNIQUE,
    session_key     TEXT NOT NULL,
    body            TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    state           TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed', 'superseded')),
    attempt         INTEGER NOT NULL DEFAULT 0,
    completions     INTEGER NOT NULL DEFAULT 0,
    accepted_ms     INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    result          TEXT,
    error           TEXT,
    superseded_by   TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS queue_items_open ON queue_items (seq) WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS queue_items_state ON queue_items (state, updated_ms);
"""

SCHEDULER_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS sched_tasks (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('cron', 'interval', 'once')),
    expr        TEXT NOT NULL DEFAULT '',
    tz          TEXT NOT NULL DEFAULT 'UTC',
    every_ms    INTEGER NOT NULL DEFAULT 0,
    anchor_ms   INTEGER NOT NULL DEFAULT 0,
    at_ms       INTEGER NOT NULL DEFAULT 0,
    prompt      TEXT NOT NULL,
    session_key TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'paused', 'completed')),
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    next_run_ms INTEGER,
    last_run_ms INTEGER,
    last_status TEXT,
    last_error  TEXT,
    extra_json  TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX IF NOT EXISTS sched_tasks_due ON sched_tasks (status, next_run_ms);
CREATE TABLE IF NOT EXISTS sched_runs (
    run_id       TEXT PRIMARY KEY,
    task_id      TEXT NOT NULL REFERENCES sched_tasks (id) ON DELETE CASCADE,
    scheduled_ms INTEGER NOT NULL,
    started_ms   INTEGER NOT NULL,
    ended_ms     INTEGER,
    status       TEXT NOT NULL CHECK (status IN ('running', 'ok', 'error', 'interrupted')),
    error        TEXT,
    result       TEXT,
    manual       INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS sched_runs_task ON sched_runs (task_id, started_ms);
CREATE INDEX IF NOT EXISTS sched_runs_open ON sched_runs (status) WHERE status = 'running';
"""

AGENT_TURNS_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS agent_turns (
    run_id        TEXT PRIMARY KEY,
    session_key   TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    status        TEXT NOT NULL,
    path          TEXT NOT NULL DEFAULT 'none',
    message       TEXT NOT NULL DEFAULT '',
    reply         TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    total_tokens  INTEGER NOT NULL DEFAULT 0,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS agent_turns_running ON agent_turns(status) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS agent_turns_session ON agent_turns(session_key, started_at);
"""

# v3: channel offsets (Telegram getUpdates, plugin channels)
CHANNELS_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS channel_offsets (
    channel_key TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
) STRICT;
"""

# v4: replies owed to channel chats (survive a crash between the turn and the send)
OUTBOX_SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS channel_outbox ("
    " run_id TEXT PRIMARY KEY,"
    " chat_id TEXT NOT NULL,"
    " kind TEXT NOT NULL,"  # 'turn' or 'refusal'
    " state TEXT NOT NULL,"  # 'pending' or 'sent'
    " created_ms INTEGER NOT NULL,"
    " sent_ms INTEGER)"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "sessions, transcripts, usage", _V1_SESSIONS),
    Migration(
        2, "queue, scheduler, agent turns", QUEUE_SCHEMA_SQL + SCHEDULER_SCHEMA_SQL + AGENT_TURNS_SCHEMA_SQL
    ),
    Migration(3, "channel offsets", CHANNELS_SCHEMA_SQL),
    Migration(4, "channel outbox", OUTBOX_SCHEMA_SQL),
)


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return max((m.version for m in migrations), default=0)


def check_ladder(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless versions are 1, 2, 3… in order (a programming error, not a store error)."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration ladder broken at {migration.name!r}: v{migration.version} != v{expected}"
            )
