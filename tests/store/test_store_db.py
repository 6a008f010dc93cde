"""The SQLite shell: pragmas, permissions, the migration ladder, backups, busy translation, durability."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import apsw
import pytest

from appliance.errors import StoreBusy, StoreError
from appliance.store import (
    MIGRATIONS,
    Database,
    Migration,
    StoreConflict,
    create_session,
    get_session,
    latest_version,
    open_database,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "appliance.db"


def test_open_applies_pragmas_and_permissions(db_path: Path) -> None:
    with open_database(db_path, busy_timeout_ms=1234) as db:
        assert db.pragma("journal_mode") == "wal"
        assert db.pragma("synchronous") == 1  # NORMAL
        assert db.pragma("foreign_keys") == 1
        assert db.pragma("busy_timeout") == 1234
        assert db.user_version == latest_version()
        assert db.quick_check() == ["ok"]
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_reopen_at_current_version_takes_no_backup(db_path: Path) -> None:
    open_database(db_path).close()
    open_database(db_path).close()
    assert not list(db_path.parent.glob("*.bak"))


def test_close_is_idempotent_and_checkpoints(db_path: Path) -> None:
    db = open_database(db_path)
    create_session(db, key="agent:main:main", agent_id="main", now_ms=1)
    db.close()
    db.close()
    wal = db_path.with_name(db_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


#: the shipped ladder's version, and the next one a test migration takes
CURRENT = latest_version()
NEXT = CURRENT + 1


def _seed_v1(path: Path) -> None:
    with open_database(path) as db:
        create_session(db, key="agent:main:main", agent_id="main", now_ms=10, session_id="sid-1")


def test_migration_ladder_backs_up_then_migrates(db_path: Path) -> None:
    _seed_v1(db_path)
    v_next = Migration(NEXT, "add notes", "ALTER TABLE sessions ADD COLUMN notes TEXT")
    with open_database(db_path, migrations=[*MIGRATIONS, v_next]) as db:
        assert db.user_version == NEXT
        assert db.scalar("SELECT count(*) FROM pragma_table_info('sessions') WHERE name = 'notes'") == 1
        rec = get_session(db, "agent:main:main")
        assert rec is not None
        assert rec.session_id == "sid-1"
    backup = db_path.with_name(db_path.name + f".pre-v{NEXT}.bak")
    assert backup.exists()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    conn = apsw.Connection(str(backup))
    try:
        assert conn.execute("PRAGMA user_version").fetchall()[0][0] == CURRENT
        assert conn.execute("SELECT session_id FROM sessions").fetchall() == [("sid-1",)]
    finally:
        conn.close()


def test_function_migration_runs_in_its_transaction(db_path: Path) -> None:
    _seed_v1(db_path)

    def add_table(conn: Any) -> None:
        conn.execute("CREATE TABLE extra_items (id INTEGER PRIMARY KEY, body TEXT NOT NULL) STRICT")

    with open_database(db_path, migrations=[*MIGRATIONS, Migration(NEXT, "extra", add_table)]) as db:
        assert db.user_version == NEXT
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'extra_items'") == [("extra_items",)]


@pytest.mark.parametrize("kind", ["function", "sql"])
def test_failing_migration_leaves_old_database_intact(db_path: Path, kind: str) -> None:
    _seed_v1(db_path)

    def boom(conn: Any) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        conn.execute("UPDATE sessions SET label = 'changed'")
        raise RuntimeError("migration exploded")

    apply: Any = (
        boom if kind == "function" else "CREATE TABLE half_done (x INTEGER); SELECT * FROM no_such_table;"
    )
    with pytest.raises(StoreError) as info:
        open_database(db_path, migrations=[*MIGRATIONS, Migration(NEXT, "bad", apply)])
    err = info.value
    assert type(err) is StoreError
    assert f"migration v{NEXT} (bad) failed" in err.message
    assert err.details is not None
    assert err.details["userVersion"] == CURRENT
    backup = Path(err.details["backup"])
    assert backup == db_path.with_name(db_path.name + f".pre-v{NEXT}.bak")
    assert backup.exists()

    with open_database(db_path) as db:
        assert db.user_version == CURRENT
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'") == []
        rec = get_session(db, "agent:main:main")
        assert rec is not None
        assert rec.session_id == "sid-1"
        assert rec.label is None
        assert db.quick_check() == ["ok"]


def test_backups_are_pruned_to_backups_kept(db_path: Path) -> None:
    _seed_v1(db_path)
    ladder = list(MIGRATIONS)
    for version in (NEXT, NEXT + 1, NEXT + 2):
        ladder.append(Migration(version, f"v{version}", f"CREATE TABLE t{version} (x INTEGER)"))
        open_database(db_path, migrations=ladder, backups_kept=2).close()
    names = sorted(p.name for p in db_path.parent.glob("*.bak"))
    assert names == [f"{db_path.name}.pre-v{NEXT + 1}.bak", f"{db_path.name}.pre-v{NEXT + 2}.bak"]


def test_newer_schema_is_refused(db_path: Path) -> None:
    with open_database(db_path, migrations=[*MIGRATIONS, Migration(NEXT, "future", "CREATE TABLE f (x)")]):
        pass
    with pytest.raises(StoreError, match="newer than this build"):
        open_database(db_path)


def test_not_a_database_is_a_store_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not sqlite at all, just some text" * 100)
    with pytest.raises(StoreError):
        open_database(db_path)


def test_unwritable_parent_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        open_database(blocker / "sub" / "db.sqlite")


def test_broken_ladder_is_a_programming_error(db_path: Path) -> None:
    with pytest.raises(ValueError, match="ladder"):
        open_database(db_path, migrations=[Migration(2, "skips v1", "SELECT 1")])


def test_busy_database_raises_store_busy(db_path: Path) -> None:
    with open_database(db_path) as first, open_database(db_path, busy_timeout_ms=0) as second:
        with first.transaction():
            first.execute("UPDATE sessions SET label = NULL")
            with pytest.raises(StoreBusy) as info:
                second.execute("BEGIN IMMEDIATE")
            assert info.value.retryable
            with pytest.raises(StoreBusy), second.transaction():
                pass
        with second.transaction():
            pass


def _create_then_fail(db: Database, key: str) -> None:
    with db.transaction():
        create_session(db, key=key, agent_id="main", now_ms=1)
        raise RuntimeError("abort")


def test_transaction_rolls_back_on_error_and_nests(db_path: Path) -> None:
    with open_database(db_path) as db:
        with pytest.raises(RuntimeError):
            _create_then_fail(db, "agent:main:a")
        assert get_session(db, "agent:main:a") is None
        with db.transaction():
            create_session(db, key="agent:main:b", agent_id="main", now_ms=1)
            with pytest.raises(RuntimeError):
                _create_then_fail(db, "agent:main:c")
        assert get_session(db, "agent:main:b") is not None
        assert get_session(db, "agent:main:c") is None


def test_constraint_violation_is_store_conflict(db_path: Path) -> None:
    with open_database(db_path) as db:
        create_session(db, key="agent:main:a", agent_id="main", now_ms=1, session_id="same")
        with pytest.raises(StoreConflict):
            create_session(db, key="agent:main:b", agent_id="main", now_ms=1, session_id="same")


def test_committed_writes_survive_kill_9(db_path: Path) -> None:
    """Every write that returned is in the database after SIGKILL (WAL + synchronous=NORMAL)."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from appliance.store import open_database, create_session
        db = open_database({str(db_path)!r})
        for i in range(50):
            create_session(db, key=f"agent:main:k{{i}}", agent_id="main", now_ms=i)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    with open_database(db_path) as db:
        assert db.scalar("SELECT count(*) FROM sessions") == 50
        assert db.quick_check() == ["ok"]


def test_database_is_usable_as_gateway_state_db(db_path: Path) -> None:
    db = open_database(db_path)
    assert isinstance(db, Database)
    assert db.path == db_path
    db.close()
    assert os.path.exists(db_path)
