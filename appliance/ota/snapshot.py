"""Database snapshots: a consistent online copy before a switch, and its restore on rollback.

Rules:
- The snapshot is taken with SQLite's online backup API (through :func:`appliance.store.open_database`)
  while the service keeps running, written to ``<name>.part``, fsynced and renamed.
- A restore never deletes the newer database: its files (``-shm``, ``-wal``, then the main file, in that
  order so a stray WAL never meets the restored file) are renamed into an ``aside`` directory first.
- Both operations are idempotent, so a rollback interrupted at any instant can simply be run again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from appliance.ota.slots import Disk
from appliance.ota.state import Step
from appliance.store import open_database

__all__ = ["DB_NAME", "database_size", "restore_snapshot", "take_snapshot"]

DB_NAME = "appliance.sqlite3"
_SIDE_FILES = ("-shm", "-wal", "-journal")


def database_size(db_path: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{db_path}{suffix}").st_size
    return total


def take_snapshot(disk: Disk, db_path: Path, dest: Path) -> bool:
    """Copy the live database to ``dest``; False when there is no database yet (nothing to protect)."""
    if not db_path.exists():
        return False
    tmp = dest.with_name(dest.name + ".part")
    db = open_database(db_path)
    try:
        db.backup_to(tmp)
    finally:
        db.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    disk.crash_point(Step.SNAPSHOT)
    disk.rename(tmp, dest)
    return True


def restore_snapshot(disk: Disk, snapshot: Path | None, db_path: Path, aside_dir: Path) -> None:
    """Move the live database into ``aside_dir`` (unless already there) and put ``snapshot`` in its place."""
    aside_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    aside_main = aside_dir / db_path.name
    if not aside_main.exists():
        for suffix in (*_SIDE_FILES, ""):
            src = Path(f"{db_path}{suffix}")
            if src.exists():
                disk.rename(src, aside_dir / src.name, sync_dir=False)
        disk.fsync_dir(aside_dir)
        disk.fsync_dir(aside_dir.parent)
        disk.fsync_dir(db_path.parent)
    if db_path.exists() or snapshot is None or not snapshot.exists():
        return
    tmp = db_path.with_name(db_path.name + ".restore")
    shutil.copyfile(snapshot, tmp)
    os.chmod(tmp, 0o600)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    disk.rename(tmp, db_path)
