"""The SQLite shell: open, tune, migrate, back up and close the appliance database (apsw).

Rules:
- every connection runs ``journal_mode=WAL``, ``synchronous=NORMAL``, ``foreign_keys=ON`` and a
  ``busy_timeout``: a write that returned is in the WAL and survives ``kill -9`` of the process;
- writes outside :meth:`Database.transaction` autocommit statement by statement, so nothing a caller
  was told succeeded is left pending in an open transaction;
- pending migrations run after an online backup to ``<db>.pre-v<N>.bak``, each in its own
  ``BEGIN IMMEDIATE`` with its ``user_version`` bump; a failing one rolls back and raises
  :class:`~appliance.errors.StoreError`, leaving the old database as it was;
- apsw exceptions never leave this module: ``BusyError``/``LockedError`` become
  :class:`~appliance.errors.StoreBusy`, constraint violations :class:`StoreConflict`, the rest
  :class:`~appliance.errors.StoreError`;
- calls are synchronous: writes are small and fast, and one connection per process needs no threads.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw

from appliance.errors import StoreBusy, StoreError
from appliance.log import get_logger
from appliance.store.migrations import MIGRATIONS, Migration, check_ladder, latest_version

__all__ = ["Database", "StoreConflict", "map_store_errors", "open_database"]

log = get_logger("appliance.store")

Row = dict[str, Any]


class StoreConflict(StoreError):
    """A write broke a uniqueness or foreign-key constraint (callers usually check first)."""


@contextlib.contextmanager
def map_store_errors(action: str) -> Iterator[None]:
    """Translate apsw exceptions raised inside the block into our typed errors."""
    try:
        yield
    except (apsw.BusyError, apsw.LockedError) as exc:
        raise StoreBusy(f"database busy during {action}", details={"action": action}) from exc
    except apsw.ConstraintError as exc:
        raise StoreConflict(f"constraint failed during {action}: {exc}", details={"action": action}) from exc
    except apsw.Error as exc:
        raise StoreError(f"database error during {action}: {exc}", details={"action": action}) from exc


def _dict_row(cursor: Any, row: Sequence[Any]) -> Row:
    names = [d[0] for d in cursor.get_description()]
    return dict(zip(names, row, strict=True))


class Database:
    """One open apsw connection with the appliance's rules applied. Use :func:`open_database`."""

    def __init__(self, connection: Any, path: Path) -> None:
        self._conn = connection
        self.path = path
        self._depth = 0
        self._closed = False

    # -- reading and writing ---------------------------------------------------------------------

    def execute(self, sql: str, bindings: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` and return every row as a tuple."""
        with map_store_errors("execute"):
            return [tuple(r) for r in self._conn.execute(sql, bindings)]

    def query(self, sql: str, bindings: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        """Run ``sql`` and return every row as a ``{column: value}`` dict."""
        with map_store_errors("query"):
            cursor = self._conn.cursor()
            cursor.row_trace = _dict_row
            return list(cursor.execute(sql, bindings))

    def query_one(self, sql: str, bindings: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        rows = self.query(sql, bindings)
        return rows[0] if rows else None

    def scalar(self, sql: str, bindings: Sequence[Any] | dict[str, Any] = ()) -> Any:
        rows = self.execute(sql, bindings)
        return rows[0][0] if rows else None

    def changes(self) -> int:
        """Rows changed by the last INSERT/UPDATE/DELETE."""
        return int(self._conn.changes())

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception); nests with savepoints.

        IMMEDIATE takes the write lock up front, so a busy database fails at BEGIN (as StoreBusy)
        rather than half-way through.
        """
        if self._depth:
            name = f"sp{self._depth}"
            self.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                with contextlib.suppress(StoreError):
                    self.execute(f"ROLLBACK TO {name}")
                    self.execute(f"RELEASE {name}")
                raise
            self._depth -= 1
            self.execute(f"RELEASE {name}")
            return
        self.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            with contextlib.suppress(StoreError):
                self.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self.execute("COMMIT")
        except StoreError:
            with contextlib.suppress(StoreError):
                self.execute("ROLLBACK")
            raise

    # -- maintenance -----------------------------------------------------------------------------

    @property
    def connection(self) -> Any:
        """The apsw connection, for components that keep their own tables (queue journal, task store)."""
        return self._conn

    @property
    def user_version(self) -> int:
        return int(self.scalar("PRAGMA user_version"))

    def pragma(self, name: str) -> Any:
        """Read one PRAGMA value (for checks and tests)."""
        if not re.fullmatch(r"[a-z_]+", name):
            raise ValueError(f"bad pragma name: {name!r}")
        return self.scalar(f"PRAGMA {name}")

    def quick_check(self) -> list[str]:
        """``PRAGMA quick_check``: ``["ok"]`` for a sound database, else the problems found."""
        return [str(row[0]) for row in self.execute("PRAGMA quick_check")]

    def backup_to(self, target: Path) -> Path:
        """Copy the live database to ``target`` with SQLite's online backup API (mode 0600)."""
        target.unlink(missing_ok=True)
        with map_store_errors("backup"):
            dest = apsw.Connection(str(target))
            try:
                with dest.backup("main", self._conn, "main") as job:
                    while not job.done:
                        job.step(256)
            finally:
                dest.close()
        os.chmod(target, 0o600)
        return target

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(apsw.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with map_store_errors("close"):
            self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _backup_path(path: Path, version: int) -> Path:
    return path.with_name(f"{path.name}.pre-v{version}.bak")


def _prune_backups(path: Path, keep: int) -> None:
    pattern = re.compile(re.escape(path.name) + r"\.pre-v(\d+)\.bak$")
    found: list[tuple[int, Path]] = []
    for candidate in path.parent.iterdir():
        m = pattern.match(candidate.name)
        if m:
            found.append((int(m.group(1)), candidate))
    found.sort(reverse=True)
    for _, stale in found[keep:]:
        stale.unlink(missing_ok=True)


def _apply(db: Database, migration: Migration) -> None:
    with db.transaction():
        if db.user_version >= migration.version:
            return  # another process migrated while we waited for the write lock
        if isinstance(migration.apply, str):
            db.execute(migration.apply)
        else:
            migration.apply(db._conn)
        db.execute(f"PRAGMA user_version = {int(migration.version)}")


def _migrate(db: Database, migrations: Sequence[Migration], backups_kept: int) -> None:
    current = db.user_version
    target = latest_version(migrations)
    if current > target:
        raise StoreError(
            f"database schema v{current} is newer than this build understands (v{target})",
            details={"path": str(db.path), "userVersion": current, "supported": target},
        )
    if current == target:
        return
    backup: Path | None = None
    if current > 0:
        backup = db.backup_to(_backup_path(db.path, target))
        log.info("store_backed_up", path=str(backup), from_version=current, to_version=target)
    for migration in migrations:
        if migration.version <= current:
            continue
        try:
            _apply(db, migration)
        except Exception as exc:
            log.exception(
                "store_migration_failed",
                exc,  # noqa: TRY401 -- our Logger.exception takes the exception explicitly
                version=migration.version,
                name=migration.name,
                backup=str(backup) if backup else None,
            )
            raise StoreError(
                f"migration v{migration.version} ({migration.name}) failed: {exc}",
                details={
                    "path": str(db.path),
                    "version": migration.version,
                    "userVersion": db.user_version,
                    "backup": str(backup) if backup else None,
                },
            ) from exc
        log.info("store_migrated", version=migration.version, name=migration.name)
    _prune_backups(db.path, backups_kept)


def _require_wal(path: Path, mode: str) -> None:
    if mode != "wal":
        raise StoreError(f"cannot enable WAL on {path} (journal_mode={mode})", details={"path": str(path)})


def open_database(
    path: str | os.PathLike[str],
    *,
    busy_timeout_ms: int = 5000,
    backups_kept: int = 3,
    migrations: Sequence[Migration] | None = None,
) -> Database:
    """Open (creating if needed) the database at ``path``, tune it and bring its schema up to date.

    Parent directories are created with mode 0700 and the file gets 0600. Raises StoreError when the
    file cannot be opened, is not a database, is newer than this build, or a migration fails, and
    StoreBusy when another writer holds the lock longer than ``busy_timeout_ms``.
    """
    ladder = tuple(MIGRATIONS if migrations is None else migrations)
    check_ladder(ladder)
    db_path = Path(path)
    try:
        db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create {db_path.parent}: {exc.strerror}", details={"path": str(db_path)}
        ) from exc
    with map_store_errors("open"):
        conn = apsw.Connection(str(db_path))
    db = Database(conn, db_path)
    try:
        with map_store_errors("open"):
            conn.set_busy_timeout(int(busy_timeout_ms))
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]).lower()
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        _require_wal(db_path, mode)
        with contextlib.suppress(OSError):
            os.chmod(db_path, 0o600)
        _migrate(db, ladder, backups_kept)
    except BaseException:
        db.close()
        raise
    return db
