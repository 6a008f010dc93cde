"""Acceptance: kill -9 the channel process repeatedly while it works through updates. Afterwards every
update is in the journal (the offset never skipped one) and no update was answered twice (redeliveries
carry the same idempotency key, which the journal dedupes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import apsw
import trio

from appliance.testing.telegram_server import FakeTelegramServer

CHILD = str(Path(__file__).with_name("telegram_crash_child.py"))
TOTAL = 40


def _scalar(conn: apsw.Connection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _count(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    try:
        conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        conn.setbusytimeout(2000)
        try:
            return _scalar(conn, f"SELECT count(*) FROM {table}")
        finally:
            conn.close()
    except (apsw.SQLError, apsw.BusyError, apsw.CantOpenError):
        return 0  # not created yet, or mid-recovery after a kill


async def test_kill_9_never_skips_and_never_answers_twice(tmp_path: Path) -> None:
    server = FakeTelegramServer("123:TEST")
    db = tmp_path / "chan.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            for i in range(TOTAL):
                server.push_message(f"m{i}")
            kills = 0
            for target in (5, 15, 25):
                proc = await trio.lowlevel.open_process(
                    [sys.executable, CHILD, f"http://127.0.0.1:{port}", str(db)],
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
                # polling another process's database: no event to wait on
                while _count(db, "journal") < target and proc.poll() is None:  # noqa: ASYNC110
                    await trio.sleep(0.005)
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                kills += 1
            proc = await trio.lowlevel.open_process(
                [sys.executable, CHILD, f"http://127.0.0.1:{port}", str(db)],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            while _count(db, "journal") < TOTAL and proc.poll() is None:  # noqa: ASYNC110
                await trio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            nursery.cancel_scope.cancel()
    conn = apsw.Connection(str(db))
    keys = [row[0] for row in conn.execute("SELECT key FROM journal ORDER BY rowid")]
    assert sorted(keys) == sorted(f"telegram:123:{uid}" for uid in range(1, TOTAL + 1))
    answers = [s.text for s in server.sent]
    assert len(answers) == len(set(answers)), "an update was answered twice"
    deliveries = _scalar(conn, "SELECT count(*) FROM deliveries")
    assert deliveries >= TOTAL  # redeliveries after a kill are allowed; they are deduped above
    assert kills == 3
